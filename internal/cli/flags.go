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
	"sync"
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
)

// defaultRedis is the Redis address when neither --redis nor REDIS_URL is set.
const defaultRedis = "redis://127.0.0.1:6379"

// pingTimeout bounds the first contact with Redis.
const pingTimeout = 10 * time.Second

// connFlags are the flags that say which Redis to use and how: every
// command that talks to Redis has them.
type connFlags struct {
	redis   string
	prefix  string
	tlsCA   string
	tlsCert string
	tlsKey  string

	cmd *cobra.Command // to tell a flag given from its default
}

// add registers the flags on cmd.
func (f *connFlags) add(cmd *cobra.Command) {
	f.cmd = cmd
	fs := cmd.Flags()
	// The default shown is the constant, never $REDIS_URL, which may hold
	// a password: the environment is read in resolve.
	fs.StringVar(&f.redis, "redis", defaultRedis,
		"Redis `URL` (redis:// or rediss:// for TLS, user and password in it or in $"+envRedisPassword+"), or host:port; env $"+envRedisURL)
	fs.StringVar(&f.prefix, "prefix", reservation.DefaultPrefix, "`prefix` of the Redis keys, before the resource name")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM `file` of the CA certificates that sign the server's (turns TLS on)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM `file` of the client certificate (with --tls-key; turns TLS on)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM `file` of the client certificate's key (with --tls-cert)")
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

// options fills the connection part of opt: password, TLS, prefix, and a
// logger that writes warnings and errors to stderr, redacted. It registers
// the passwords as secrets first, so that no message can show them.
func (f *connFlags) options(a *app, addr string, opt *reservation.Options) error {
	if u, err := url.Parse(addr); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			a.addSecret(pw)
			a.addSecret(url.QueryEscape(pw))
			a.addSecret(url.PathEscape(pw))
		}
	}
	if pw := a.getenv(envRedisPassword); pw != "" {
		a.addSecret(pw)
		opt.Password = pw
	}
	opt.Prefix = f.prefix
	if opt.Prefix == "" {
		return usageErrorf("--prefix is empty")
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(&onceHandler{
			Handler: slog.NewTextHandler(redactingWriter{a, a.stderr}, &slog.HandlerOptions{Level: slog.LevelWarn}),
			seen:    new(sync.Map),
		})
	}
	cfg, err := f.tlsConfig(addr)
	if err != nil {
		return err
	}
	opt.TLSConfig = cfg
	return nil
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

// connect makes a Client with opt (By filled in by the caller or the host
// name) and checks with a PING that Redis answers and takes the
// credentials. A bad option or address is a usage error (64), a Redis that
// does not answer or refuses the credentials is 69; either message names
// the address, never the password.
func (f *connFlags) connect(ctx context.Context, a *app, opt reservation.Options) (*reservation.Client, error) {
	addr, _ := f.addr(a)
	return f.connectTo(ctx, a, addr, opt)
}

// connectTo is connect to addr rather than the address of the flags.
func (f *connFlags) connectTo(ctx context.Context, a *app, addr string, opt reservation.Options) (*reservation.Client, error) {
	if err := f.options(a, addr, &opt); err != nil {
		return nil, err
	}
	if opt.By == "" {
		opt.By = hostname()
	}
	c, err := reservation.New(addr, &opt)
	if err != nil {
		return nil, inputError(err)
	}
	if err := ping(ctx, c, addr); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ping checks that Redis answers, and explains when it does not.
func ping(ctx context.Context, c *reservation.Client, addr string) error {
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	err := c.Ping(pctx)
	if err == nil {
		return nil
	}
	if ierr := interrupted(ctx); ierr != nil {
		return ierr
	}
	cause := err
	if u := errors.Unwrap(err); u != nil {
		cause = u // the library's message repeats the address
	}
	where := hostPort(addr)
	msg := cause.Error()
	switch {
	case strings.HasPrefix(msg, "WRONGPASS"), strings.Contains(msg, "invalid password"),
		strings.Contains(msg, "called without any password configured"):
		return unavailable(fmt.Errorf("cannot use Redis at %s: it refused the credentials: %s", where, msg))
	case strings.HasPrefix(msg, "NOAUTH"):
		return unavailable(fmt.Errorf("cannot use Redis at %s: it wants a password (in the URL or $%s): %s", where, envRedisPassword, msg))
	case errors.Is(err, context.DeadlineExceeded):
		return unavailable(fmt.Errorf("cannot use Redis at %s: no answer within %v", where, pingTimeout))
	}
	return unavailable(fmt.Errorf("cannot use Redis at %s: %s", where, msg))
}

// hostname is the default worker name.
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "reserve"
	}
	return h
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
	fs.DurationVar(&f.ttl, "ttl", reservation.DefaultTTL, "how long the reservation outlives its holder's last renewal (takeover delay after a crash)")
	fs.DurationVar(&f.heartbeat, "heartbeat", 0, "renewal interval (default a third of --ttl)")
	fs.Var(&f.restartGuard, "restart-guard",
		"after Redis lost its data, refuse acquisitions for this `duration` (default the --ttl; \"off\" disables)")
}

// options answers the library options of the flags.
func (f *holdFlags) options(a *app) reservation.Options {
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
	}
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

// addJSON registers --json on cmd; what says what it prints.
func addJSON(cmd *cobra.Command, v *bool, what string) {
	cmd.Flags().BoolVar(v, "json", false, "print "+what+" on stdout, as JSON")
}

// onceHandler passes the library's log records on, except repeats of
// those that the library logs at every attempt of a wait.
type onceHandler struct {
	slog.Handler
	seen *sync.Map // message -> struct{}
}

func (h *onceHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "reservation-guarded" {
		if _, dup := h.seen.LoadOrStore(r.Message, struct{}{}); dup {
			return nil
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h *onceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &onceHandler{h.Handler.WithAttrs(attrs), h.seen}
}

func (h *onceHandler) WithGroup(name string) slog.Handler {
	return &onceHandler{h.Handler.WithGroup(name), h.seen}
}
