package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/redis-reservation/reservation"
)

// Environment variables read by reserve. Flags win over them.
const (
	envRedisURL      = "REDIS_URL"
	envRedisPassword = "REDIS_PASSWORD"
	envBy            = "RESERVE_BY"
	envLogLevel      = "RESERVE_LOG_LEVEL"
	envLogFormat     = "RESERVE_LOG_FORMAT"
)

// defaultRedis is the Redis address when neither --redis nor REDIS_URL is set.
const defaultRedis = "redis://127.0.0.1:6379"

// pingTimeout bounds the first contact with Redis.
const pingTimeout = 10 * time.Second

// connFlags are the flags that say which Redis to use and how, and what
// the library may log: every command that talks to Redis has them.
type connFlags struct {
	redis     string
	prefix    string
	tlsCA     string
	tlsCert   string
	tlsKey    string
	logLevel  string
	logFormat string

	cmd *cobra.Command // to tell a flag given from its default

	// Set by options, for messages.
	where    string // host:port of the Redis in use
	password bool   // a password was given, in the URL or the environment
}

// add registers the flags on cmd.
func (f *connFlags) add(cmd *cobra.Command) {
	f.cmd = cmd
	fs := cmd.Flags()
	// The default shown is the constant, never $REDIS_URL, which may hold
	// a password: the environment is read in addr.
	fs.StringVar(&f.redis, "redis", defaultRedis,
		"Redis `URL` (redis:// or rediss:// for TLS, user and password in it or in $"+envRedisPassword+"), or host:port; env $"+envRedisURL)
	fs.StringVar(&f.prefix, "prefix", reservation.DefaultPrefix, "`prefix` of the Redis keys, before the resource name")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM `file` of the CA certificates that sign the server's (turns TLS on)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM `file` of the client certificate (with --tls-key; turns TLS on)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM `file` of the client certificate's key (with --tls-cert)")
	fs.StringVar(&f.logLevel, "log-level", "",
		"print the library's log records from this `level` on, on stderr: debug, info, warn or error (default info with --log-format, else none); env $"+envLogLevel)
	fs.StringVar(&f.logFormat, "log-format", "",
		"print the library's log records in this `format`, on stderr: text or json (default text with --log-level, else none); env $"+envLogFormat)
}

// addr answers the Redis address in force, and whether it was given (by
// flag or environment) rather than the default.
func (f *connFlags) addr(a *app) (string, bool) {
	if f.cmd != nil && f.cmd.Flags().Changed("redis") {
		return f.redis, true
	}
	if v := a.getenv(envRedisURL); v != "" {
		return v, true
	}
	return f.redis, false
}

// display returns addr fit for a message: a URL's password replaced.
func display(addr string) string {
	if !strings.Contains(addr, "://") {
		return addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// hostPort answers the host:port that addr names, for messages and the TLS
// server name.
func hostPort(addr string) string {
	if !strings.Contains(addr, "://") {
		return addr
	}
	if o, err := redis.ParseURL(addr); err == nil {
		return o.Addr
	}
	return display(addr)
}

// options fills the connection part of opt: password, TLS, prefix, the
// logger (records only when asked for, redacted) and the hook that tells
// the person what happens. It registers the passwords as secrets first, so
// that no message can show them.
func (f *connFlags) options(a *app, addr string, opt *reservation.Options) error {
	f.where = hostPort(addr)
	if u, err := url.Parse(addr); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			f.password = true
			a.addSecret(pw)
			a.addSecret(url.QueryEscape(pw))
			a.addSecret(url.PathEscape(pw))
		}
	}
	if pw := a.getenv(envRedisPassword); pw != "" {
		f.password = true
		a.addSecret(pw)
		opt.Password = pw
	}
	opt.Prefix = f.prefix
	if opt.Prefix == "" {
		return usageErrorf("--prefix is empty")
	}
	if opt.Logger == nil {
		l, err := f.logger(a)
		if err != nil {
			return err
		}
		opt.Logger = l
	}
	if opt.OnEvent == nil {
		opt.OnEvent = f.onEvent(a, addr)
	}
	cfg, err := f.tlsConfig(addr)
	if err != nil {
		return err
	}
	opt.TLSConfig = cfg
	return nil
}

// logger returns the library's logger of --log-level and --log-format:
// their records on stderr, redacted; without either, a logger that
// discards them, since reserve says what matters itself (notes).
func (f *connFlags) logger(a *app) (*slog.Logger, error) {
	level, levelFrom := f.setting(a, "log-level", f.logLevel, envLogLevel)
	format, formatFrom := f.setting(a, "log-format", f.logFormat, envLogFormat)
	if level == "" && format == "" {
		return slog.New(slog.DiscardHandler), nil
	}
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	switch strings.ToLower(level) {
	case "", "info":
	case "debug":
		opts.Level = slog.LevelDebug
	case "warn":
		opts.Level = slog.LevelWarn
	case "error":
		opts.Level = slog.LevelError
	default:
		return nil, usageErrorf("%s %q: want debug, info, warn or error", levelFrom, level)
	}
	// The handlers write each record in one call, so a secret is never
	// split between two writes.
	w := redactingWriter{a, a.stderr}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErrorf("%s %q: want text or json", formatFrom, format)
}

// setting answers the value of flag, or of the environment variable env
// when the flag is not given, and which of the two it is, for a message.
func (f *connFlags) setting(a *app, flag, value, env string) (v, from string) {
	if f.cmd != nil && f.cmd.Flags().Changed(flag) {
		return value, "--" + flag
	}
	if e := a.getenv(env); e != "" {
		return e, "$" + env
	}
	return value, "--" + flag
}

// tlsConfig builds the TLS configuration from the --tls-* flags, or answers
// nil when none is given (a rediss:// URL then uses the system's roots).
func (f *connFlags) tlsConfig(addr string) (*tls.Config, error) {
	if f.tlsCA == "" && f.tlsCert == "" && f.tlsKey == "" {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(hostPort(addr))
	if err != nil {
		host = hostPort(addr)
	}
	// The library replaces the URL's TLS configuration with this one, so
	// it must name the server itself.
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, inputError(fmt.Errorf("--tls-ca: %w", err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, inputError(fmt.Errorf("--tls-ca: no PEM certificate in %s", f.tlsCA))
		}
		cfg.RootCAs = pool
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, usageErrorf("--tls-cert and --tls-key go together")
	}
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, inputError(fmt.Errorf("--tls-cert/--tls-key: %w", err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// connect makes a Client with opt for the Redis of the flags, and checks
// with a PING that Redis answers and takes the credentials, so that every
// command starts with the same first contact, and its failure reads the
// same. A bad option or address is a usage error (64), a Redis that does
// not answer or refuses the credentials is 69.
func (f *connFlags) connect(ctx context.Context, a *app, opt reservation.Options) (*reservation.Client, error) {
	addr, _ := f.addr(a)
	return f.connectTo(ctx, a, addr, opt)
}

// connectTo is connect to addr rather than the address of the flags.
func (f *connFlags) connectTo(ctx context.Context, a *app, addr string, opt reservation.Options) (*reservation.Client, error) {
	if err := f.options(a, addr, &opt); err != nil {
		return nil, err
	}
	c, err := reservation.New(addr, &opt)
	if err != nil {
		return nil, inputError(err)
	}
	if err := f.ping(ctx, c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ping checks that Redis answers and takes the credentials, within
// pingTimeout.
func (f *connFlags) ping(ctx context.Context, c *reservation.Client) error {
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := c.Ping(pctx); err != nil {
		return f.failure(ctx, err)
	}
	return nil
}

// failure maps an error of a call to the library to reserve's exit and a
// sentence that names the server, never the password: a bad resource name
// is a usage error (64), a server that does not answer, refuses the
// credentials or the commands is 69, a signal is 128+n.
func (f *connFlags) failure(ctx context.Context, err error) error {
	if ierr := interrupted(ctx); ierr != nil {
		return ierr
	}
	var auth *reservation.AuthError
	switch {
	case errors.Is(err, reservation.ErrInvalidResource):
		return &exitError{code: ExitUsage, err: err, usage: true}
	case errors.As(err, &auth) && !f.password:
		return unavailable(fmt.Errorf("cannot use Redis at %s: it wants a password (in the URL or $%s): %w", f.where, envRedisPassword, auth.Err))
	case errors.As(err, &auth):
		return unavailable(fmt.Errorf("cannot use Redis at %s: it refused the credentials: %w", f.where, auth.Err))
	case errors.Is(err, reservation.ErrNoPermission):
		return unavailable(fmt.Errorf("cannot use Redis at %s: it refuses this user a command that reserve needs (see the user's ACL): %w", f.where, err))
	case errors.Is(err, context.DeadlineExceeded):
		return unavailable(fmt.Errorf("cannot use Redis at %s: no answer within %v", f.where, pingTimeout))
	}
	cause := err
	if u := errors.Unwrap(err); u != nil {
		cause = u // the library's message repeats the operation and the address
	}
	return unavailable(fmt.Errorf("cannot use Redis at %s: %w", f.where, cause))
}

// bounded returns ctx bounded by pingTimeout, for one call that touches
// Redis once: a server that does not answer is reported, not waited for.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, pingTimeout)
}

// holdFlags are the flags of the commands that hold reservations.
type holdFlags struct {
	by           string
	ttl          time.Duration
	heartbeat    time.Duration
	restartGuard guardValue

	cmd *cobra.Command
}

func (f *holdFlags) add(cmd *cobra.Command) {
	f.cmd = cmd
	fs := cmd.Flags()
	fs.StringVar(&f.by, "by", "", "worker `name`, the start of the holder value (default the host name); env $"+envBy)
	fs.DurationVar(&f.ttl, "ttl", reservation.DefaultTTL, "how long the reservation outlives its holder's last renewal (takeover delay after a crash); at least "+reservation.MinTTL.String())
	fs.DurationVar(&f.heartbeat, "heartbeat", 0, "renewal interval (default a third of --ttl)")
	fs.Var(&f.restartGuard, "restart-guard",
		"after Redis lost its data, refuse acquisitions for this `duration` (default the --ttl; \"off\" disables)")
}

// options answers the library options of the flags. A flag given as 0
// is a usage error: the library reads a zero as "the default", which is not
// what someone who typed 0 meant. Other values out of range are the
// library's to refuse, with its reason.
func (f *holdFlags) options(a *app) (reservation.Options, error) {
	if err := zeroFlag(f.cmd, "ttl", f.ttl, "the TTL", reservation.DefaultTTL.String()); err != nil {
		return reservation.Options{}, err
	}
	if err := zeroFlag(f.cmd, "heartbeat", f.heartbeat, "the renewal interval", "a third of --ttl"); err != nil {
		return reservation.Options{}, err
	}
	if err := f.restartGuard.check(f.cmd, "the --ttl"); err != nil {
		return reservation.Options{}, err
	}
	by := f.by
	if !f.cmd.Flags().Changed("by") {
		if v := a.getenv(envBy); v != "" {
			by = v
		}
	}
	return reservation.Options{
		By:                by,
		TTL:               f.ttl,
		HeartbeatInterval: f.heartbeat,
		RestartGuard:      time.Duration(f.restartGuard),
	}, nil
}

// zeroFlag refuses the duration flag name of cmd when it was given as 0:
// what names what it sets, def its default, for the message.
func zeroFlag(cmd *cobra.Command, name string, v time.Duration, what, def string) error {
	if v != 0 || cmd == nil || !cmd.Flags().Changed(name) {
		return nil
	}
	return usageErrorf("--%s %v: %s must be positive; leave the flag out for the default (%s)", name, v, what, def)
}

// guardValue is the --restart-guard flag: a duration, or "off".
type guardValue time.Duration

var _ pflag.Value = (*guardValue)(nil)

func (g *guardValue) String() string {
	switch {
	case *g == 0:
		return ""
	case *g < 0:
		return "off"
	}
	return time.Duration(*g).String()
}

func (g *guardValue) Set(s string) error {
	if s == "off" {
		*g = -1
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New(`want a duration like 30s, or "off"`)
	}
	if d < 0 {
		d = -1
	}
	*g = guardValue(d)
	return nil
}

func (g *guardValue) Type() string { return "duration" }

// check refuses --restart-guard 0 on cmd (see zeroFlag); def is the
// default period, for the message.
func (g *guardValue) check(cmd *cobra.Command, def string) error {
	if *g != 0 || cmd == nil || !cmd.Flags().Changed("restart-guard") {
		return nil
	}
	return usageErrorf(`--restart-guard 0s: the guard period must be positive; leave the flag out for the default (%s), or give "off" to turn the guard off`, def)
}

// addJSON registers --json on cmd; what says what it prints.
func addJSON(cmd *cobra.Command, v *bool, what string) {
	cmd.Flags().BoolVar(v, "json", false, "print "+what+" on stdout, as JSON")
}
