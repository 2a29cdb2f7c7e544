package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
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
	envPasswordFile  = "REDIS_PASSWORD_FILE"
	envBy            = "RESERVE_BY"
	envLogLevel      = "RESERVE_LOG_LEVEL"
	envLogFormat     = "RESERVE_LOG_FORMAT"
	envCluster       = "RESERVE_CLUSTER"
	envQuorum        = "RESERVE_QUORUM"
	envWaitReplicas  = "RESERVE_WAIT_REPLICAS"
	envWaitTimeout   = "RESERVE_WAIT_TIMEOUT"
)

// defaultRedis is the Redis address when neither --redis nor REDIS_URL is set.
const defaultRedis = "redis://127.0.0.1:6379"

// pingTimeout bounds the first contact with Redis.
const pingTimeout = 10 * time.Second

// connFlags are the flags that say which Redis to use and how, and what
// the library may log: every command that talks to Redis has them.
type connFlags struct {
	redis     redisValue
	cluster   bool
	quorum    bool
	prefix    string
	pwFile    string
	tlsCA     string
	tlsCert   string
	tlsKey    string
	logLevel  string
	logFormat string

	cmd *cobra.Command // to tell a flag given from its default

	// Set by options and resolve, for messages.
	where    string      // the deployment in use: "Redis at host:port", "the Redis Cluster at ..."
	kind     topology    // its kind
	dep      *deployment // set by connect
	password bool        // a password for Redis (the master, the nodes) was given, in the URL or the environment

	// observe, when not nil, gets every event of the library too (release
	// --force collects the permits it deleted).
	observe func(reservation.Event)
}

// add registers the flags on cmd.
func (f *connFlags) add(cmd *cobra.Command) {
	f.cmd = cmd
	fs := cmd.Flags()
	// The default shown is the constant, never $REDIS_URL, which may hold
	// a password: the environment is read in addrs.
	f.redis = redisValue{addrs: []string{defaultRedis}}
	fs.Var(&f.redis, "redis",
		"Redis `URL` (redis:// or rediss:// for TLS, user and password in it or in $"+envRedisPassword+"), or host:port; "+
			"?master_name=NAME for Sentinel, ?addr=host:port for more Cluster nodes; once for each server with --quorum; "+
			"env $"+envRedisURL+" (addresses separated by spaces with --quorum)")
	fs.BoolVar(&f.cluster, "cluster", false,
		"the --redis address is a Redis Cluster node (default: ask the server; --cluster=false: one server, do not ask); env $"+envCluster)
	fs.BoolVar(&f.quorum, "quorum", false,
		"use a quorum of independent Redis servers, each given with its own --redis (3, 5, ...): a reservation is held on a majority of them; env $"+envQuorum)
	fs.StringVar(&f.pwFile, "password-file", "",
		"read the Redis password from this `file` (a secret mounted by an orchestrator; a trailing newline is dropped), "+
			"instead of $"+envRedisPassword+"; env $"+envPasswordFile)
	fs.StringVar(&f.prefix, "prefix", reservation.DefaultPrefix, "`prefix` of the Redis keys, before the resource name")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM `file` of the CA certificates that sign the server's (turns TLS on)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM `file` of the client certificate (with --tls-key; turns TLS on)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM `file` of the client certificate's key (with --tls-cert)")
	fs.StringVar(&f.logLevel, "log-level", "",
		"print the library's log records from this `level` on, on stderr: debug, info, warn or error (default info with --log-format, else none); env $"+envLogLevel)
	fs.StringVar(&f.logFormat, "log-format", "",
		"print the library's log records in this `format`, on stderr: text or json (default text with --log-level, else none); env $"+envLogFormat)
}

// addr answers the Redis address in force (the first, when there are
// several), and whether it was given (by flag or environment) rather than
// the default.
func (f *connFlags) addr(a *app) (string, bool) {
	addrs, from := f.addrs(a)
	return addrs[0], from != ""
}

// addrs answers the Redis addresses in force: one for each --redis, else
// those of $REDIS_URL (separated by white space, which a URL escapes),
// else the default; and from where, for messages: "--redis",
// "$REDIS_URL", or "" for the default.
func (f *connFlags) addrs(a *app) (addrs []string, from string) {
	if f.cmd != nil && f.cmd.Flags().Changed("redis") {
		return f.redis.addrs, "--redis"
	}
	if v := strings.Fields(a.getenv(envRedisURL)); len(v) > 0 {
		return v, "$" + envRedisURL
	}
	return []string{defaultRedis}, ""
}

// redisValue is the --redis flag: each use adds an address, the first
// replaces the default. Several are only for --quorum (servers says so).
type redisValue struct {
	addrs []string
	set   bool
}

var _ pflag.Value = (*redisValue)(nil)

func (r *redisValue) String() string { return strings.Join(r.addrs, " ") }

func (r *redisValue) Set(s string) error {
	if !r.set {
		r.addrs, r.set = nil, true
	}
	r.addrs = append(r.addrs, s)
	return nil
}

func (r *redisValue) Type() string { return "string" }

// display returns addr fit for a message: a URL's passwords replaced (its
// user information's, and a Sentinel URL's password parameter).
func display(addr string) string {
	if !strings.Contains(addr, "://") {
		return addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "(unparsable URL)"
	}
	if q := u.Query(); q.Has("password") {
		for i := range q["password"] {
			q["password"][i] = "xxxxx"
		}
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// shown returns addr fit for a message: display's, and redacted.
func (f *connFlags) shown(a *app, addr string) string {
	return a.redact(display(addr))
}

// clusterSetting answers whether --cluster (or $RESERVE_CLUSTER) was
// given, and its value.
func (f *connFlags) clusterSetting(a *app) (set, on bool, err error) {
	if f.cmd != nil && f.cmd.Flags().Changed("cluster") {
		return true, f.cluster, nil
	}
	v := a.getenv(envCluster)
	if v == "" {
		return false, false, nil
	}
	on, err = strconv.ParseBool(v)
	if err != nil {
		return false, false, usageErrorf("$%s %q: want true or false (1 or 0)", envCluster, v)
	}
	return true, on, nil
}

// hostPort answers the host:port that addr, a single server's address,
// names, for messages.
func hostPort(addr string) string {
	if !strings.Contains(addr, "://") {
		return addr
	}
	if o, err := redis.ParseURL(addr); err == nil {
		return o.Addr
	}
	return display(addr)
}

// options fills the connection part of opt for the deployment of addrs
// (one address, or a quorum's): password, TLS, prefix and the logger
// (records only when asked for, redacted); connectTo and quorumClient add
// the hook that tells the person what happens. It registers the passwords
// as secrets first, so that no message can show them.
func (f *connFlags) options(a *app, addrs []string, opt *reservation.Options) error {
	if len(addrs) == 1 {
		f.kind = urlTopology(addrs[0])
		f.where = describe(f.kind, addrs[0])
	} else {
		f.kind = quorum
		f.where = describeQuorum(addrs)
	}
	f.password = false
	for _, addr := range addrs {
		for _, pw := range urlPasswords(addr) {
			a.addSecret(pw)
			a.addSecret(url.QueryEscape(pw))
			a.addSecret(url.PathEscape(pw))
		}
		f.password = f.password || masterPassword(addr, f.kind)
	}
	pw, err := f.readPassword(a)
	if err != nil {
		return err
	}
	if pw != "" {
		f.password = true
		a.addSecret(pw)
		a.addSecret(url.QueryEscape(pw))
		a.addSecret(url.PathEscape(pw))
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
	// A bad $RESERVE_CLUSTER is a usage error before anything else.
	if _, _, err := f.clusterSetting(a); err != nil {
		return err
	}
	cfg, err := f.tlsConfig()
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

// maxPasswordFile bounds what --password-file reads: a password is short,
// and a file past this is some other file given by mistake.
const maxPasswordFile = 4096

// readPassword answers the password of --password-file (or
// $REDIS_PASSWORD_FILE), else of $REDIS_PASSWORD, else "". Its errors never
// quote the file's content.
func (f *connFlags) readPassword(a *app) (string, error) {
	file, from := f.setting(a, "password-file", f.pwFile, envPasswordFile)
	if file == "" {
		return a.getenv(envRedisPassword), nil
	}
	if a.getenv(envRedisPassword) != "" {
		return "", usageErrorf("both %s and $%s give a password: give one", from, envRedisPassword)
	}
	fh, err := os.Open(file)
	if err != nil {
		return "", usageErrorf("%s: %v", from, err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxPasswordFile+1))
	switch {
	case err != nil:
		return "", usageErrorf("%s: %v", from, err)
	case len(b) > maxPasswordFile:
		return "", usageErrorf("%s %s is longer than %d bytes: not a password file", from, file, maxPasswordFile)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pw == "" {
		return "", usageErrorf("%s %s is empty", from, file)
	}
	return pw, nil
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
func (f *connFlags) tlsConfig() (*tls.Config, error) {
	if f.tlsCA == "" && f.tlsCert == "" && f.tlsKey == "" {
		return nil, nil
	}
	// No ServerName: each connection checks the certificate against the
	// host it dials (crypto/tls derives it), which a Cluster or Sentinel
	// deployment needs, with its many hosts.
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
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

// connect makes a Client with opt for the Redis of the flags (one
// deployment, or a quorum of servers), and checks with a PING that Redis
// answers and takes the credentials, so that every command starts with
// the same first contact, and its failure reads the same. A bad option or
// address is a usage error (64), a Redis that does not answer or refuses
// the credentials is 69.
func (f *connFlags) connect(ctx context.Context, a *app, opt reservation.Options) (*reservation.Client, error) {
	addrs, isQuorum, err := f.servers(a)
	switch {
	case err != nil:
		return nil, err
	case isQuorum:
		return f.connectQuorum(ctx, a, addrs, opt)
	}
	return f.connectTo(ctx, a, addrs[0], opt)
}

// client makes the Client of the flags with opt, without the first
// contact's check: for shell completion, which says nothing.
func (f *connFlags) client(ctx context.Context, a *app, opt *reservation.Options) (*reservation.Client, error) {
	addrs, isQuorum, err := f.servers(a)
	switch {
	case err != nil:
		return nil, err
	case isQuorum:
		return f.quorumClient(ctx, a, addrs, opt)
	}
	if err := f.options(a, addrs, opt); err != nil {
		return nil, err
	}
	d, err := f.resolve(ctx, a, addrs[0], opt)
	if err != nil {
		return nil, err
	}
	return d.client(opt)
}

// connectTo is connect to addr rather than the address of the flags.
func (f *connFlags) connectTo(ctx context.Context, a *app, addr string, opt reservation.Options) (*reservation.Client, error) {
	if err := f.options(a, []string{addr}, &opt); err != nil {
		return nil, err
	}
	d, err := f.resolve(ctx, a, addr, &opt)
	if err != nil {
		return nil, err
	}
	f.where, f.kind, f.dep = d.where, d.kind, d
	if opt.OnEvent == nil {
		opt.OnEvent = f.onEvent(a, addr, d.where, d.kind)
	}
	c, err := d.client(&opt)
	if err != nil {
		return nil, inputError(err)
	}
	if err := f.ping(ctx, c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// clusterOptions returns the go-redis options of the Cluster in use, with
// the Client's credentials and TLS, or nil when it is not a Cluster (or
// before connect).
func (f *connFlags) clusterOptions() *redis.ClusterOptions {
	if f.dep == nil {
		return nil
	}
	return f.dep.clusterOptions()
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
	return f.failureOf(ctx, err, "")
}

// failureOf is failure for a call about resource (or none: ""): on a
// Cluster, a node that does not answer is named as the master of resource.
// A single address that is a Cluster node, taken for one server (the
// server could not be asked: an ACL without INFO), and --cluster on a
// server that is not one, are usage errors (64) that say which flag to
// change.
func (f *connFlags) failureOf(ctx context.Context, err error, resource string) error {
	if ierr := interrupted(ctx); ierr != nil {
		return ierr
	}
	var (
		auth *reservation.AuthError
		op   *net.OpError
		qerr *reservation.QuorumError
	)
	switch {
	case errors.Is(err, reservation.ErrInvalidResource):
		return &exitError{code: ExitUsage, err: err, usage: true}
	case errors.Is(err, reservation.ErrInvalidOptions):
		// The library's reason, as a Cluster's hash slots for a set.
		return inputError(err)
	case f.kind == quorum && errors.As(err, &qerr):
		return unavailable(f.quorumFailure(qerr))
	case errors.As(err, &auth):
		return unavailable(f.authFailure(auth))
	case errors.Is(err, reservation.ErrNoPermission):
		return unavailable(fmt.Errorf("cannot use %s: it %s", f.where, refusedCommand(err)))
	case errors.Is(err, context.DeadlineExceeded):
		return unavailable(fmt.Errorf("cannot use %s: no answer within %v", f.where, pingTimeout))
	case f.kind == cluster && isReply(err, "CLUSTERDOWN "):
		return unavailable(fmt.Errorf("cannot use %s: the Cluster is down: a master does not answer and no replica took its place, "+
			"or some slot has no master: %w", f.where, libCause(err)))
	case f.kind == single && isClusterReply(err):
		return inputError(fmt.Errorf("%s is a Redis Cluster node, and reserve took it for one server (it could not ask it: "+
			"see the user's ACL for INFO and CLUSTER INFO): give --cluster, or a URL with ?addr=: %w", f.where, err))
	case f.kind == cluster && strings.Contains(err.Error(), "cluster support disabled"):
		return inputError(fmt.Errorf("the server at %s is not a Redis Cluster node: its cluster support is disabled; "+
			"leave out --cluster (and $%s), or the ?addr= parameters of the URL", f.dep.hosts(), envCluster))
	case f.kind == cluster && errors.As(err, &op) && op.Addr != nil && resource != "":
		return unavailable(fmt.Errorf("cannot use %s: the master of %q, %s, does not answer (%s)", f.where, resource, op.Addr, shortCause(op)))
	case f.kind == cluster && errors.As(err, &op) && op.Addr != nil:
		return unavailable(fmt.Errorf("cannot use %s: its node %s does not answer (%s)", f.where, op.Addr, shortCause(op)))
	case f.kind == sentinel && errors.As(err, &op) && op.Addr != nil:
		return unavailable(fmt.Errorf("cannot use %s: the master that the Sentinels name, %s, does not answer (%s); "+
			"if it is down, they fail over to a replica once they agree that it is", f.where, op.Addr, shortCause(op)))
	}
	return unavailable(fmt.Errorf("cannot use %s: %w", f.where, libCause(err)))
}

// refusedCommand says that the user's ACL refused a command: Redis's own
// words, which name the command, and where to find the rule a user needs.
func refusedCommand(err error) string {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		err = rerr
	}
	return "refuses this user a command that reserve needs: " + err.Error() + " (reserve acl prints the ACL rule that reserve needs)"
}

// libCause returns what err, an error of the library, wraps: its message
// without the operation and the address, which reserve says its own way.
func libCause(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// authFailure says which credentials Redis refused, and where they go.
func (f *connFlags) authFailure(auth *reservation.AuthError) error {
	switch {
	case f.kind == quorum:
		return fmt.Errorf("cannot use %s: %s %s: %w", f.where, hostPort(auth.Addr), f.authCause(), auth.Err)
	case f.kind == sentinel && !f.password:
		return fmt.Errorf("cannot use %s: %s wants a password: give the master's in $%s or as the URL's password parameter "+
			"(the URL's user:password@ are the Sentinels'): %w", f.where, auth.Addr, envRedisPassword, auth.Err)
	case f.kind == sentinel:
		return fmt.Errorf("cannot use %s: %s refused the credentials (the master's are $%s or the URL's password parameter; "+
			"the URL's user:password@ are the Sentinels'): %w", f.where, auth.Addr, envRedisPassword, auth.Err)
	case !f.password:
		return fmt.Errorf("cannot use %s: it wants a password (in the URL or $%s): %w", f.where, envRedisPassword, auth.Err)
	}
	return fmt.Errorf("cannot use %s: it refused the credentials: %w", f.where, auth.Err)
}

// isClusterReply reports whether err is a reply that only a Cluster node
// gives: a key in a slot of another node, keys of one call in several
// slots, or a Cluster that is down.
func isClusterReply(err error) bool {
	return isReply(err, "MOVED ", "ASK ", "CROSSSLOT ", "CLUSTERDOWN ")
}

// isReply reports whether err is an error reply of Redis that starts with
// one of the codes.
func isReply(err error, codes ...string) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	for _, code := range codes {
		if strings.HasPrefix(rerr.Error(), code) {
			return true
		}
	}
	return false
}

// masterPassword reports whether addr holds a password for the Redis that
// holds the keys, or $REDIS_PASSWORD does: for a Sentinel URL the password
// parameter (its user information is the Sentinels'), else the user
// information's.
func masterPassword(addr string, kind topology) bool {
	u, err := url.Parse(addr)
	if err != nil || !strings.Contains(addr, "://") {
		return false
	}
	if kind == sentinel {
		return u.Query().Get("password") != ""
	}
	if u.User == nil {
		return false
	}
	pw, _ := u.User.Password()
	return pw != ""
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
	waitReplicas int
	waitTimeout  time.Duration
	noQueue      bool

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
	fs.IntVar(&f.waitReplicas, "wait-replicas", 0,
		"each acquisition and renewal waits until this `number` of replicas have it (Redis's WAIT); an acquisition they do not confirm in time fails (exit 69); env $"+envWaitReplicas)
	fs.DurationVar(&f.waitTimeout, "wait-timeout", 0,
		"how long each wait of --wait-replicas may take (default "+reservation.DefaultWaitTimeout.String()+", at most a quarter of --ttl); env $"+envWaitTimeout)
	fs.BoolVar(&f.noQueue, "no-queue", false,
		"do not queue on the server: take RESOURCE whenever it is free, ahead of the workers that queue for it (as Node workers and reserve before 1.0 do)")
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
	replicas, timeout, err := f.wait(a)
	if err != nil {
		return reservation.Options{}, err
	}
	return reservation.Options{
		By:                by,
		TTL:               f.ttl,
		HeartbeatInterval: f.heartbeat,
		RestartGuard:      time.Duration(f.restartGuard),
		WaitReplicas:      replicas,
		WaitTimeout:       timeout,
		NoQueue:           f.noQueue,
	}, nil
}

// wait answers --wait-replicas and --wait-timeout, or their environment
// variables. Negative values and timeouts out of range are the library's
// to refuse; a timeout given as 0, or given without replicas to wait for,
// is a usage error.
func (f *holdFlags) wait(a *app) (replicas int, timeout time.Duration, err error) {
	if err := zeroFlag(f.cmd, "wait-timeout", f.waitTimeout, "the wait timeout",
		reservation.DefaultWaitTimeout.String()+", or a quarter of --ttl when shorter"); err != nil {
		return 0, 0, err
	}
	replicas, timeout = f.waitReplicas, f.waitTimeout
	if v := a.getenv(envWaitReplicas); v != "" && !f.cmd.Flags().Changed("wait-replicas") {
		if replicas, err = strconv.Atoi(v); err != nil {
			return 0, 0, usageErrorf("$%s %q: want a number of replicas", envWaitReplicas, v)
		}
	}
	if v := a.getenv(envWaitTimeout); v != "" && !f.cmd.Flags().Changed("wait-timeout") {
		if timeout, err = time.ParseDuration(v); err != nil || timeout <= 0 {
			return 0, 0, usageErrorf("$%s %q: want a positive duration like 500ms", envWaitTimeout, v)
		}
	}
	if f.cmd.Flags().Changed("wait-timeout") && replicas == 0 {
		return 0, 0, usageErrorf("--wait-timeout bounds the wait for --wait-replicas, which is 0: give --wait-replicas too")
	}
	return replicas, timeout, nil
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

// shortCause returns the words of err that say what went wrong, without
// the address that a network error repeats: "connection refused".
func shortCause(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		var sys *os.SyscallError
		if errors.As(op.Err, &sys) {
			return sys.Err.Error()
		}
		return op.Err.Error()
	}
	return err.Error()
}
