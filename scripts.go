package reservation

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed scripts/acquire.lua
	acquireLua string
	//go:embed scripts/acquire_set.lua
	acquireSetLua string
	//go:embed scripts/renew.lua
	renewLua string
	//go:embed scripts/release.lua
	releaseLua string
	//go:embed scripts/force_release.lua
	forceReleaseLua string
	//go:embed scripts/raise_fence.lua
	raiseFenceLua string

	acquireScript      = redis.NewScript(acquireLua)
	acquireSetScript   = redis.NewScript(acquireSetLua)
	renewScript        = redis.NewScript(renewLua)
	releaseScript      = redis.NewScript(releaseLua)
	forceReleaseScript = redis.NewScript(forceReleaseLua)
	raiseFenceScript   = redis.NewScript(raiseFenceLua)
)

// isNoScript reports whether err is Redis's answer to EVALSHA of a script it
// does not have.
func isNoScript(err error) bool {
	rerr, ok := redisErr(err)
	return ok && strings.HasPrefix(rerr.Error(), "NOSCRIPT")
}

// redisErr returns err as Redis's answer (an error reply), and whether it
// is one rather than a failure to get one. A nil err is answered first:
// errors.As's target escapes to the heap, an allocation on every call of
// the hot paths that check their replies.
func redisErr(err error) (redis.Error, bool) {
	if err == nil {
		return nil, false
	}
	var rerr redis.Error
	ok := errors.As(err, &rerr)
	return rerr, ok
}

// scriptCall is one script run in a pipeline by evalPipelined.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd // its reply, once run

	// late, when not nil, gets the reply of a call whose caller stopped
	// waiting for it (see batcher.runDetached).
	late func(*redis.Cmd)

	// then, when not nil, adds commands to the pipeline right after the
	// script, on the same connection (see Client.renewals); exists is the
	// reply of the one it adds.
	then   func(p redis.Pipeliner)
	exists *redis.IntCmd

	// replicas, when positive, is how many replicas must acknowledge the
	// script's writes within waitTimeout: evalPipelined ends the pipeline
	// with one WAIT, which covers every write before it on the connection,
	// and its reply lands in waited.
	replicas    int
	waitTimeout time.Duration
	waited      *redis.Cmd

	// watch, when not empty, are the keys the script acquires: run on a
	// notifier's tracking connection (see batcher), the script is followed
	// there by a read of them that watches them (CLIENT CACHING YES, then
	// GET: see watchReads), in the same round trip; seen and caching are
	// its replies, and read what the notifier was when it was sent.
	watch   []string
	seen    []*redis.StringCmd
	caching []*redis.Cmd
	read    *trackedRead
	// wakeBefore is the wake channel of the first watch key's waiters
	// when the call was sent (nil when it had none): unchanged at the
	// reply, no notice of the key came meanwhile.
	wakeBefore chan struct{}
}

// trackedRead is a read on a notifier's tracking connection that watched
// keys, and the notifier's tracking generation and count of notices when
// it was sent: the keys are still watched if neither moved since (see
// notifier.watchHeld).
type trackedRead struct {
	n            *notifier
	gen, notices uint64
}

// onTracking prepares sc to run on n's tracking connection: the read of
// its watch keys follows it, when it has any.
func (sc *scriptCall) onTracking(n *notifier) {
	if len(sc.watch) == 0 {
		return
	}
	gen, notices := n.snapshot()
	sc.read, sc.wakeBefore = &trackedRead{n: n, gen: gen, notices: notices}, n.wakeOf(sc.watch[0])
	sc.then = func(p redis.Pipeliner) {
		// The pipeline's own context bounds it.
		sc.caching, sc.seen = watchReads(context.Background(), p, sc.watch)
	}
}

// armWaiters marks the first watch key as watched for its waiters when
// the read after sc found it held (by anyone): it is watched on the tracking
// connection, and its waiters need not read it again to watch it (see
// notifier.armedByRead).
func (sc *scriptCall) armWaiters() {
	if sc.read == nil || sc.seen == nil {
		return
	}
	if v, err := sc.seen[0].Result(); err == nil && v != "" && sc.caching[0].Err() == nil {
		sc.read.n.armedByRead(sc.watch[0], sc.wakeBefore, sc.read.gen)
	}
}

// heldRead returns the read after sc when it found every watch key held
// with value (the keys are then watched since it), else nil.
func (sc *scriptCall) heldRead(value string) *trackedRead {
	if sc.read == nil || sc.seen == nil {
		return nil
	}
	for i, get := range sc.seen {
		// CLIENT CACHING fails when tracking is off on the connection.
		if v, err := get.Result(); err != nil || v != value || sc.caching[i].Err() != nil {
			return nil
		}
	}
	return sc.read
}

// run runs the call on its own, with EVALSHA, falling back to EVAL on
// NOSCRIPT; in a pipeline when commands follow it (then, or a WAIT), or on
// a Cluster.
//
// On a Cluster, the Client sends nothing on its own through go-redis's
// cluster client, only in pipelines (or to a master's own client): before
// the first command it sends alone, go-redis reads the command table of a
// node picked at random, replicas included, for up to 5 s whatever the
// caller's deadline. With one node hung, a give-back or a Release with a
// short deadline failed so. Pipelines route by key, and keyless commands
// to a master, without that table.
func (sc *scriptCall) run(ctx context.Context, rdb redis.UniversalClient) *redis.Cmd {
	if _, cluster := rdb.(*redis.ClusterClient); cluster || sc.then != nil || sc.replicas > 0 {
		_, _ = evalPipelined(ctx, rdb, []*scriptCall{sc})
		return sc.cmd
	}
	sc.cmd = sc.script.Run(ctx, rdb, sc.keys, sc.args...)
	return sc.cmd
}

// alone sends the command that add puts in a pipeline of its own, so that
// on a Cluster it goes through no command table (see scriptCall.run). An
// error of the connection (refused credentials), which go-redis reports for
// the pipeline and not for its commands, becomes the command's.
func alone[C redis.Cmder](ctx context.Context, rdb redis.UniversalClient, add func(redis.Pipeliner) C) C {
	var cmd C
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmd = add(p)
		return nil
	})
	if err != nil && cmd.Err() == nil {
		cmd.SetErr(err)
	}
	return cmd
}

// replicated returns nil when the call asked no replica to acknowledge its
// writes or enough did, else an error matching ErrNotReplicated.
func (sc *scriptCall) replicated() error {
	if sc.replicas == 0 {
		return nil
	}
	n, err := sc.waited.Int64()
	if err != nil {
		return fmt.Errorf("%w: WAIT: %w", ErrNotReplicated, err)
	}
	if n < int64(sc.replicas) {
		return fmt.Errorf("%w: %d of %d replicas acknowledged the write in time", ErrNotReplicated, n, sc.replicas)
	}
	return nil
}

// waitAfter has sc's writes acknowledged by the replicas that
// Options.WaitReplicas asks for: a WAIT on its connection after it (WAIT is
// refused inside a script).
func (c *Client) waitAfter(sc *scriptCall) {
	sc.replicas, sc.waitTimeout = c.opt.WaitReplicas, c.opt.WaitTimeout
}

// releaseCall returns the release script's call for key held with value,
// or for a waiter with value that leaves the queue of key.
func (c *Client) releaseCall(key, value string, limit int) *scriptCall {
	// A permit's notices and queue are its semaphore's.
	sem := semaphoreOf(key)
	var names [4]string
	companionsOf(sem, names[:], queueSuffix, leaseSuffix, channelSuffix, turnSuffix)
	keys := []string{key, names[0], names[1]}
	if limit > 0 {
		// key is the semaphore's: which permit value holds is not known.
		keys = append(keys, permitKeys(key, limit)...)
	}
	return &scriptCall{script: releaseScript, keys: keys,
		args: []any{value, names[2], c.args.publish, names[3]}}
}

// publishCommand is how scripts publish: SPUBLISH on a Cluster, so that a
// notice goes to the key's node only, not to every node of the cluster;
// PUBLISH elsewhere.
func (c *Client) publishCommand() string {
	if c.cluster {
		return "SPUBLISH"
	}
	return "PUBLISH"
}

// noticeArgs returns args, then how the release scripts publish their
// notice: PUBLISH (no argument) on one server; on a Cluster, SPUBLISH, so
// that the notice goes to the key's node only, not to every node of the
// cluster.
func (c *Client) noticeArgs(args ...any) []any {
	if c.cluster {
		args = append(args, "SPUBLISH")
	}
	return args
}

// evalPipelined runs calls with EVALSHA in one pipeline. Those that find
// their script missing (a restarted or flushed server) did not run: they
// run again, in a second pipeline, after the scripts are loaded, or with
// EVAL when they cannot be loaded. It returns
// when the last pipeline was sent and the first call's error, as Pipelined
// does; each call's own reply is in its cmd.
func evalPipelined(ctx context.Context, rdb redis.UniversalClient, calls []*scriptCall) (time.Time, error) {
	// exec sends calls in one pipeline, each followed by what its then
	// adds: by digest (EVALSHA), or by source (EVAL).
	exec := func(calls []*scriptCall, bySource bool) time.Time {
		sent := time.Now()
		_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range calls {
				if bySource {
					c.cmd = c.script.Eval(ctx, p, c.keys, c.args...)
				} else {
					c.cmd = c.script.EvalSha(ctx, p, c.keys, c.args...)
				}
				if c.then != nil {
					c.then(p)
				}
			}
			// One WAIT for them all, last: a WAIT blocks its
			// connection, so one after each script would add up.
			var wait *redis.Cmd
			for _, c := range calls {
				if c.replicas > 0 {
					if wait == nil {
						wait = p.Do(ctx, "WAIT", c.replicas, c.waitTimeout.Milliseconds())
					}
					c.waited = wait
				}
			}
			return nil
		})
		return sent
	}
	sent := exec(calls, false)
	var again []*scriptCall
	for _, c := range calls {
		if isNoScript(c.cmd.Err()) {
			again = append(again, c)
		}
	}
	if len(again) > 0 {
		// Without SCRIPT LOAD (renamed, or denied to the user, or on a
		// Cluster) EVAL may still be allowed: send the sources themselves.
		sent = exec(again, loadScripts(ctx, rdb) != nil)
	}
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// errNoLoadOnCluster is loadScripts' answer on a Cluster: the pipeline
// sends the sources with EVAL, which caches a script on its node as a load
// does. A load on every node would wait for any that hangs, a replica too.
var errNoLoadOnCluster = errors.New("reservation: scripts are not loaded on every node of a Cluster")

// loadScripts loads every script on the server, for pipelines that send
// EVALSHA and cannot fall back to EVAL one command at a time. On a Cluster
// it loads nothing and answers errNoLoadOnCluster.
func loadScripts(ctx context.Context, rdb redis.UniversalClient) error {
	// Not Script.Load: in a pipeline it would record an empty digest.
	sources := []string{acquireLua, acquireSetLua, renewLua, releaseLua, forceReleaseLua, raiseFenceLua}
	load := func(ctx context.Context, c *redis.Client) error {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, src := range sources {
				p.ScriptLoad(ctx, src)
			}
			return nil
		})
		return err
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return errNoLoadOnCluster
	case *redis.Client:
		return load(ctx, c)
	default:
		for _, src := range sources {
			if err := rdb.ScriptLoad(ctx, src).Err(); err != nil {
				return err
			}
		}
		return nil
	}
}
