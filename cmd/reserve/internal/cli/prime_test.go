package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis-reservation/reservation"
	"github.com/redis-reservation/reservation/internal/redistest"
)

// unguardedClient returns a library Client on srv with the restart guard
// off, which acquires on a server that is not primed.
func unguardedClient(t *testing.T, srv *redistest.Server, by string) *reservation.Client {
	t.Helper()
	c, err := reservation.New(srv.URL(), &reservation.Options{By: by, TTL: 20 * time.Second, RestartGuard: -1,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("reservation.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// statusJSON runs reserve status --json and decodes it.
func statusJSON(t *testing.T, srv *redistest.Server, resource string) infoJSON {
	t.Helper()
	res := runReserve(t, srv, nil, "status", "--json", resource)
	var in infoJSON
	if err := json.Unmarshal([]byte(res.stdout), &in); err != nil || res.code != 0 {
		t.Fatalf("status --json %s: %v\n%v", resource, err, res)
	}
	return in
}

// TestRestartGuardSentence runs on a server that is not primed: the first
// acquisition is held back, and reserve says so once, with the command that
// primes the server; status and list show the guard.
func TestRestartGuardSentence(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t) // not primed
	res := runReserve(t, srv, nil, "run", "--no-wait", "x", "--", "echo", "hi")
	if res.code != ExitNotAcquired || strings.Contains(res.stdout, "hi") {
		t.Fatalf("run --no-wait on a new server: got %v\nwant exit %d, the command not run", res, ExitNotAcquired)
	}
	if n := strings.Count(res.stderr, "reserve prime"); n != 1 {
		t.Errorf("stderr names reserve prime %d times, want once:\n%s", n, res.stderr)
	}
	var sentence string
	lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
	for _, line := range lines {
		if strings.Contains(line, "reserve prime") {
			sentence = line
		}
	}
	// The error comes last, after the sentence that says why and what to do.
	if last := lines[len(lines)-1]; !strings.Contains(last, `"x" is held back by the restart guard for `) ||
		!strings.HasSuffix(last, "not waiting (--no-wait)") || last == sentence {
		t.Errorf("stderr does not end with the error, after the guard sentence:\n%s", res.stderr)
	}
	for _, want := range []string{"reserve: Redis at " + srv.Addr, "restart guard holds acquisitions back for",
		"if this server is new, run: reserve prime --redis " + srv.URL()} {
		if !strings.Contains(sentence, want) {
			t.Errorf("guard sentence %q has no %q", sentence, want)
		}
	}
	assertNoLogRecords(t, res.stderr)

	// The attempt started the guard: status and list show its time left.
	res = runReserve(t, srv, nil, "status", "x")
	if !strings.Contains(res.stdout, "restart guard  holds acquisitions back for ") {
		t.Errorf("status during the guard:\n%s", res.stdout)
	}
	if in := statusJSON(t, srv, "x"); in.GuardMillis <= 0 || in.GuardMillis > 30_000 || in.GuardUnset {
		t.Errorf("status --json during the guard: guard_ms %d, guard_unset %v; want (0, 30000], false", in.GuardMillis, in.GuardUnset)
	}
	c := unguardedClient(t, srv, "other")
	hold(t, c, "y")
	hold(t, c, "z")
	res = runReserve(t, srv, nil, "list")
	if n := strings.Count(res.stdout, "restart guard: holds acquisitions back for "); n != 1 ||
		!strings.Contains(res.stdout, "y ") || !strings.Contains(res.stdout, "z ") {
		t.Errorf("list during the guard: the guard shown %d times, want once, below y and z:\n%s", n, res.stdout)
	}
	res = runReserve(t, srv, nil, "list", "--json")
	var infos []infoJSON
	if err := json.Unmarshal([]byte(res.stdout), &infos); err != nil || len(infos) != 2 || infos[0].GuardMillis <= 0 {
		t.Errorf("list --json during the guard: %v, %+v", err, infos)
	}

	// Priming now would let a holder in beside y and z.
	res = runReserve(t, srv, nil, "prime")
	if res.code != ExitFailure || !strings.Contains(res.stderr, `2 reservations ("y", "z")`) {
		t.Errorf("prime while reservations are held: got %v\nwant exit %d naming them", res, ExitFailure)
	}
}

// TestPrime primes a new server: status and list show the guard unprimed
// before, prime succeeds once, and the first acquisition then goes through.
func TestPrime(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t) // not primed
	res := runReserve(t, srv, nil, "status", "job")
	if !strings.Contains(res.stdout, "restart guard  not primed — the next acquisition starts it (30s); run 'reserve prime'") {
		t.Errorf("status on a new server:\n%s", res.stdout)
	}
	if in := statusJSON(t, srv, "job"); !in.GuardUnset || in.GuardMillis != 0 {
		t.Errorf("status --json on a new server: guard_ms %d, guard_unset %v; want 0, true", in.GuardMillis, in.GuardUnset)
	}
	res = runReserve(t, srv, nil, "list", "--restart-guard", "1m")
	if !strings.Contains(res.stdout, "no reservation is held\nrestart guard: not primed — the next acquisition starts it (1m0s)") {
		t.Errorf("list on a new server:\n%s", res.stdout)
	}

	res = runReserve(t, srv, nil, "prime")
	if res.code != 0 || !strings.Contains(res.stdout, "primed the restart guard of Redis at "+srv.Addr+": acquisitions there start at once") ||
		res.stderr != "" {
		t.Fatalf("prime: %v", res)
	}
	res = runReserve(t, srv, nil, "prime")
	if res.code != ExitFailure || !strings.Contains(res.stderr, "primed already") {
		t.Errorf("prime again: got %v\nwant exit %d, primed already", res, ExitFailure)
	}
	res = runReserve(t, srv, nil, "run", "--no-wait", "job", "--", "echo", "hi")
	if res.code != 0 || res.stdout != "hi\n" || res.stderr != "" {
		t.Errorf("run --no-wait once primed: got %v\nwant exit 0, hi, nothing on stderr", res)
	}
	res = runReserve(t, srv, nil, "status", "job")
	if strings.Contains(res.stdout, "restart guard") {
		t.Errorf("status once primed shows the guard:\n%s", res.stdout)
	}
}

// TestPrimeInUse checks that prime changes nothing on a server that holds
// reservations: it is not new.
func TestPrimeInUse(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t) // not primed, but in use by a client without the guard
	hold(t, unguardedClient(t, srv, "other"), "busy")
	res := runReserve(t, srv, nil, "prime")
	if res.code != ExitFailure || !strings.Contains(res.stderr, `a reservation ("busy")`) || !strings.Contains(res.stderr, "not primed") {
		t.Errorf("prime while busy is held: got %v\nwant exit %d naming it", res, ExitFailure)
	}
	n, err := srv.Client(t).Exists(context.Background(), "{reservation}:restart-guard").Result()
	if err != nil || n != 0 {
		t.Errorf("prime refused, yet the restart guard's marker is set (%d, %v)", n, err)
	}
	if res := runReserve(t, srv, nil, "prime", "--help"); !strings.Contains(res.stdout, "restarted without its data is unsafe") {
		t.Errorf("prime --help does not say when priming is unsafe:\n%s", res.stdout)
	}
}

// TestPrimeLiftsGuard primes a new server whose guard the first
// acquisition started: prime lifts it and says so, and the next
// acquisition goes through at once; prime again is refused.
func TestPrimeLiftsGuard(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t) // not primed
	res := runReserve(t, srv, nil, "run", "--no-wait", "x", "--", "echo", "hi")
	if res.code != ExitNotAcquired || strings.Contains(res.stdout, "hi") || !strings.Contains(res.stderr, "reserve prime") {
		t.Fatalf("run --no-wait on a new server: got %v\nwant exit %d, the guard sentence", res, ExitNotAcquired)
	}
	res = runReserve(t, srv, nil, "prime")
	if res.code != 0 || res.stderr != "" || !strings.Contains(res.stdout,
		"primed the restart guard of Redis at "+srv.Addr+" (lifted the guard that an acquisition started, which held acquisitions back for ") {
		t.Fatalf("prime after the guard started: got %v\nwant exit 0, saying it lifted the guard", res)
	}
	res = runReserve(t, srv, nil, "run", "--no-wait", "x", "--", "echo", "hi")
	if res.code != 0 || res.stdout != "hi\n" || res.stderr != "" {
		t.Errorf("run --no-wait once primed: got %v\nwant exit 0, hi, nothing on stderr", res)
	}
	res = runReserve(t, srv, nil, "prime")
	if res.code != ExitFailure || !strings.Contains(res.stderr, "primed already; nothing changed") {
		t.Errorf("prime again: got %v\nwant exit %d, primed already", res, ExitFailure)
	}
}
