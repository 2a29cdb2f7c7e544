package main

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/redis/rueidis"
)

// --- this library's scripts, raw on rueidis: the acquire script as
// TryLock sends it (the queue on, the restart guard of a TTL, the fencing
// token), the holder's read of its key in the same round trip (a plain GET:
// the library's CLIENT CACHING YES before it is left out, as it would fail
// on a connection without tracking), and the release script as Release
// sends it. None of
// the library's client side runs: no notifier, no heartbeat, no batcher.
// It measures whether a transport on rueidis could carry the library past
// the peers: the scripts' server-side cost stays. ---

// guardMarker is the restart guard's marker on a single server, as the
// library names it; the harness primes it before each library's run.
const guardMarker = "{reservation}:restart-guard"

type rawScripts struct {
	c                rueidis.Client
	acquire, release *rueidis.Lua
	acquireSHA       string
	// args: the TTL, the restart guard and the fencing companion's
	// lifetime, in milliseconds, as the library's defaults make them.
	ttl, guard, fence string
}

type rawScriptsHeld struct {
	l          *rawScripts
	key, value string
}

// scriptSource reads one of this library's scripts from the checkout
// this harness was built in: the library keeps them unexported, and the
// harness measures the very text the library sends.
func scriptSource(name string) (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("no source path: build the harness from a checkout, without -trimpath")
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "scripts", name))
	if err != nil {
		return "", fmt.Errorf("%s needs the library's scripts: %w", libRawRueScripts, err)
	}
	return string(b), nil
}

func newRawScripts(tg target, rt *roundTrips, st settings) (locker, error) {
	acquire, err := scriptSource("acquire.lua")
	if err != nil {
		return nil, err
	}
	release, err := scriptSource("release.lua")
	if err != nil {
		return nil, err
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: tg.addrs, DialCtxFn: rt.dialRueidis, DisableCache: true})
	if err != nil {
		return nil, err
	}
	ttl := st.ttl.Milliseconds()
	return &rawScripts{
		c: c, acquire: rueidis.NewLuaScript(acquire), release: rueidis.NewLuaScript(release),
		acquireSHA: fmt.Sprintf("%x", sha1.Sum([]byte(acquire))),
		ttl:        strconv.FormatInt(ttl, 10), guard: strconv.FormatInt(ttl, 10), // RestartGuard defaults to the TTL
		fence: strconv.FormatInt(max(2*ttl, 60_000), 10),
	}, nil
}

// scriptNames are the companions of key the scripts use, as the library names
// them for a key without braces.
func scriptNames(key string) (fence, queue, leases, released, turn string) {
	tag := "{" + key + "}:"
	return tag + "fence", tag + "queue", tag + "leases", tag + "released", tag + "turn"
}

func (l *rawScripts) try(ctx context.Context, res string) (held, bool, error) {
	v := "bench-" + randomValue()
	fence, queue, leases, _, turn := scriptNames(res)
	keys := []string{res, fence, guardMarker, queue, leases}
	args := []string{v, l.ttl, l.guard, l.fence, "try", turn, "PUBLISH"}
	// The script and the read in one round trip, as the library sends them.
	rs := l.c.DoMulti(ctx,
		l.c.B().Evalsha().Sha1(l.acquireSHA).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build(),
		l.c.B().Get().Key(res).Build())
	acquired, read := rs[0], rs[1]
	if e, ok := rueidis.IsRedisErr(acquired.Error()); ok && e.IsNoScript() {
		acquired = l.acquire.Exec(ctx, l.c, keys, args) // loads it, once
		read = l.c.Do(ctx, l.c.B().Get().Key(res).Build())
	}
	reply, err := acquired.ToArray()
	if err != nil {
		return nil, false, err
	}
	if len(reply) == 0 {
		return nil, false, errors.New("the acquire script answered an empty array")
	}
	if got, err := reply[0].AsInt64(); err != nil || got != 1 {
		return nil, false, err
	}
	if err := read.Error(); err != nil {
		return nil, false, err
	}
	return rawScriptsHeld{l, res, v}, true, nil
}

func (l *rawScripts) wait(context.Context, string) (held, error) { return nil, errNotSupported }
func (l *rawScripts) keys(res string) []string                   { return []string{res} }
func (l *rawScripts) renews() bool                               { return false }
func (l *rawScripts) close()                                     { l.c.Close() }

func (h rawScriptsHeld) release(ctx context.Context) error {
	_, queue, leases, released, turn := scriptNames(h.key)
	got, err := h.l.release.Exec(ctx, h.l.c, []string{h.key, queue, leases}, []string{h.value, released, "PUBLISH", turn}).AsInt64()
	if err == nil && got != 1 {
		err = fmt.Errorf("release answered %d", got)
	}
	return err
}
func (h rawScriptsHeld) extend(context.Context) error { return errNotSupported }
func (h rawScriptsHeld) lost() bool                   { return false }
