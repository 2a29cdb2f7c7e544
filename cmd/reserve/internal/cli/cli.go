// Package cli implements the reserve command: run a command while holding a
// reservation, show and break reservations, and a live demo.
//
// Every command is built by a constructor from an app, which carries the
// process's streams, environment and signals, so that tests can run the
// commands in process through cobra's SetArgs as well as by running the
// built binary. There is no package-level state.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// Exit codes of reserve (docs/CLI.md lists them). Those for failures come from sysexits.h;
// 126, 127 and 128+n are a shell's, as env(1) and timeout(1) use them.
const (
	ExitOK          = 0   // success
	ExitFailure     = 1   // anything else that went wrong (demo invariant broken, output failed, prime refused)
	ExitUsage       = 64  // EX_USAGE: bad flag, argument, URL, duration, TLS file
	ExitUnavailable = 69  // EX_UNAVAILABLE: Redis cannot be reached or refuses the credentials
	ExitLost        = 70  // EX_SOFTWARE: the reservation was lost while the command ran
	ExitNotAcquired = 75  // EX_TEMPFAIL: held by someone else (--no-wait) or --timeout reached
	ExitCannotExec  = 126 // the command exists but could not be started
	ExitNotFound    = 127 // the command was not found
	ExitSignal      = 128 // plus the signal's number: ended by that signal
)

// app is what the commands take from the process: streams, environment,
// signals. Main fills it from the os package; tests fill it by hand.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	environ        func() []string
	// signals delivers SIGINT, SIGTERM and SIGHUP; nil in process tests.
	signals <-chan os.Signal
	// secrets are redacted from every message reserve prints: passwords
	// from the Redis URL and REDIS_PASSWORD, registered by connFlags.
	secrets *[]string
	// notes prints reserve's sentences about the library's events, each
	// once per process.
	notes *notes
}

// Main runs reserve with the process's arguments, streams, environment and
// signals, and returns its exit code.
func Main() int {
	// go-redis logs connection pool failures to the standard logger;
	// reserve reports what fails itself, once, without them.
	redis.SetLogger(silentLogger{})
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	a := &app{
		stdin:   os.Stdin,
		stdout:  os.Stdout,
		stderr:  os.Stderr,
		getenv:  os.Getenv,
		environ: os.Environ,
		signals: sigs,
	}
	return a.main(context.Background(), os.Args[1:])
}

// silentLogger discards go-redis's internal log.
type silentLogger struct{}

func (silentLogger) Printf(context.Context, string, ...any) {}

// main runs reserve with args and returns its exit code, after printing
// what went wrong on stderr.
func (a *app) main(ctx context.Context, args []string) int {
	if a.secrets == nil {
		a.secrets = new([]string)
	}
	if a.notes == nil {
		a.notes = &notes{a: a}
	}
	root := newRootCmd(a)
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		// Cobra's own errors: an unknown command or flag, a bad flag
		// value, a wrong number of arguments.
		ee = &exitError{code: ExitUsage, err: err, usage: true}
	}
	if ee.err != nil {
		// The library's own errors are printed as they are, after what
		// reserve says about them.
		fmt.Fprintf(a.stderr, "reserve: %s\n", a.redact(oneLine(ee.err.Error())))
	}
	if ee.usage && cmd != nil {
		fmt.Fprintf(a.stderr, "Usage: %s\nRun '%s --help' for more.\n", cmd.UseLine(), cmd.CommandPath())
	}
	return ee.code
}

// redact removes every registered secret from s.
func (a *app) redact(s string) string {
	for _, secret := range *a.secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "xxxxx")
		}
	}
	return s
}

// addSecret registers a password to be redacted from messages, as it is
// and as a quoted string (a text or JSON log record) shows it.
func (a *app) addSecret(s string) {
	if s == "" {
		return
	}
	*a.secrets = append(*a.secrets, s)
	if q := strconv.Quote(s); q[1:len(q)-1] != s {
		*a.secrets = append(*a.secrets, q[1:len(q)-1])
	}
	if j, err := json.Marshal(s); err == nil && string(j[1:len(j)-1]) != s {
		*a.secrets = append(*a.secrets, string(j[1:len(j)-1]))
	}
}

// redactingWriter writes to w with the app's secrets redacted. The slog
// handler writes each record in one call, so a secret is never split.
type redactingWriter struct {
	a *app
	w io.Writer
}

func (r redactingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, r.a.redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// oneLine joins the lines of a multi-line message (errors.Join's).
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")
}

// exitError carries an exit code out of a command's RunE.
type exitError struct {
	code  int
	err   error // printed on stderr, unless nil
	usage bool  // print the command's usage after the message
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports bad usage or input: exit 64, the message and the usage.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...), usage: true}
}

// oneResource is the Args check of the commands that take one RESOURCE:
// without it, or with several (as reserve run takes them), it says what to
// give instead, as a usage error.
func oneResource(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 1:
		return nil
	case 0:
		return usageErrorf("missing RESOURCE")
	}
	return usageErrorf("one RESOURCE, got %d: reserve %s takes one at a time (reserve list shows every reservation)",
		len(args), cmd.Name())
}

// inputError reports bad input found after parsing (a TLS file that does
// not load, an option the library refuses): exit 64, without the usage.
func inputError(err error) error {
	return &exitError{code: ExitUsage, err: err}
}

// unavailable reports that Redis cannot be used: exit 69.
func unavailable(err error) error {
	return &exitError{code: ExitUnavailable, err: err}
}

// outputError reports that stdout could not be written: exit 1.
func outputError(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: ExitFailure, err: err}
}

// exitCode ends reserve with code and no message (the child's status).
func exitCode(code int) error {
	if code == ExitOK {
		return nil
	}
	return &exitError{code: code}
}

// signalCause is the cause of a context ended by a signal.
type signalCause struct{ sig os.Signal }

func (s signalCause) Error() string {
	if n, ok := s.sig.(syscall.Signal); ok && unix.SignalName(n) != "" {
		return "stopped by " + unix.SignalName(n)
	}
	return "stopped by signal " + s.sig.String()
}

// signalExit answers the exit code for an end by signal sig: 128 + its
// number, as a shell reports it.
func signalExit(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return ExitSignal + int(s)
	}
	return ExitSignal + int(syscall.SIGTERM)
}

// interruptible returns a context that ends at the first signal, with a
// signalCause. stop ends the watch (and waits until it has ended, so that
// the caller may read the signals itself from then on) and cancels ctx.
func (a *app) interruptible(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	if a.signals == nil {
		return ctx, func() { cancel(nil) }
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case s := <-a.signals:
			cancel(signalCause{s})
		case <-quit:
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		close(quit)
		<-done
		cancel(nil)
	}
}

// interrupted answers the exit error for a context ended by a signal, or
// nil when ctx did not end that way.
func interrupted(ctx context.Context) error {
	var sc signalCause
	if errors.As(context.Cause(ctx), &sc) {
		return &exitError{code: signalExit(sc.sig), err: errors.New(sc.Error())}
	}
	return nil
}

// newRootCmd builds the reserve command and its subcommands.
func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "reserve",
		Short: "Run commands under Redis reservations, and see who holds what",
		Long: `reserve runs a command while holding a reservation in Redis, so that the
same job never runs twice at once across hosts (or, with run --limit N, never
more than N times at once); and it shows, waits for and breaks reservations.
It uses the keys of the Go library github.com/redis-reservation/reservation
and of the Node library node-redis-reservation ("reservation-<resource>"),
so all of them exclude each other.

It talks to one Redis server, to a Redis Cluster, to the master that Redis
Sentinel names, or to a quorum of independent servers, as --redis (or
$REDIS_URL) says, in go-redis's forms:
  host:port, redis://[user:password@]host:port[/db]
      one server, or a Cluster node (reserve asks the server which it is)
  redis://[user:password@]host:port?addr=host2:port[&addr=...]
      a Cluster, by its nodes
  redis://[user:password@]sentinel:26379?master_name=NAME[&addr=sentinel2:26379]
      through Sentinel: this user and password are the Sentinels'; the
      master's are $REDIS_PASSWORD (or &password=...)
  --quorum --redis host1:port --redis host2:port --redis host3:port
      a quorum: each reservation is held on a majority of these servers, an
      odd number of plain servers, at least 3 ($RESERVE_QUORUM=true with the
      addresses in $REDIS_URL, separated by spaces); several --redis without
      --quorum is a usage error

reserve prints its own sentences on stderr; the library's log records only
with --log-level or --log-format (or $RESERVE_LOG_LEVEL, $RESERVE_LOG_FORMAT).

Exit codes: the command's own status (128+n when killed by signal n);
1 prime refused; 64 bad usage or input; 69 Redis unreachable (with
--quorum: a majority of its servers), refusing the credentials, or not
confirming an acquisition on --wait-replicas replicas (or, for list, some
Cluster master or quorum server not read); 70 reservation lost while
the command ran; 75 not acquired (--no-wait while held or held back by the
restart guard, or --timeout reached); 126/127 command not executable/not
found.`,
		Example: `  # See it work: workers contending, a crash, a takeover (about 15 s).
  reserve demo

  # From cron on several hosts: run the report at most once at a time.
  */5 * * * * reserve run --no-wait nightly-report -- /usr/local/bin/report.sh

  # A semaphore: at most 3 exports at a time across the fleet.
  reserve run --limit 3 exports -- ./export.sh

  # Who holds what; live, with waiters and changes.
  reserve list
  reserve status nightly-report
  reserve top

  # A Redis user allowed just what reserve needs, and its password from a file.
  echo "user worker on >secret $(reserve acl)" >> /etc/redis/users.acl
  reserve run --password-file /run/secrets/redis nightly-report -- ./report.sh

  # On a brand-new Redis, before the first reservation: no restart guard wait.
  reserve prime

  # A Redis Cluster (any node: reserve finds out), and through Sentinel.
  reserve list --redis redis://10.0.0.5:6379
  REDIS_PASSWORD=... reserve list --redis 'redis://sentinel-1:26379?master_name=main&addr=sentinel-2:26379'

  # A quorum of three independent servers: held while a majority holds it.
  reserve run --quorum --redis redis-a:6379 --redis redis-b:6379 --redis redis-c:6379 nightly-report -- ./report.sh`,
		Version:           version(),
		SilenceErrors:     true,
		SilenceUsage:      true,
		DisableAutoGenTag: true,
	}
	root.SetVersionTemplate("reserve {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: ExitUsage, err: err, usage: true}
	})
	root.AddCommand(
		newRunCmd(a),
		newStatusCmd(a),
		newListCmd(a),
		newTopCmd(a),
		newACLCmd(a),
		newWaitCmd(a),
		newReleaseCmd(a),
		newPrimeCmd(a),
		newDemoCmd(a),
		newDemoWorkerCmd(a),
		newVersionCmd(a),
	)
	return root
}
