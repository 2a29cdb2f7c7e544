package reservation_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redis-reservation/reservation"
)

// Fuzz targets. Their seed corpora run as ordinary tests (go test .), against
// the server that TestMain starts; fuzz one with, for example:
//
//	go test -run '^$' -fuzz FuzzResourceName -fuzztime 30s .

// fuzzClient returns a Client of the test server with its own key prefix,
// closed when the test ends.
func fuzzClient(t *testing.T, prefix string) *reservation.Client {
	t.Helper()
	c, err := reservation.New(redisURL, &reservation.Options{By: "fuzz", TTL: 5 * time.Second, Prefix: prefix,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.PrimeRestartGuard(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

// fuzzRedis returns a plain go-redis client of the test server.
func fuzzRedis(t *testing.T) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Any resource name: Lock, Status and Release round-trip against a real
// server, and a bad name is refused with ErrInvalidResource, never a panic
// or another error.
func FuzzResourceName(f *testing.F) {
	for _, s := range []string{"job", "", " ", "{", "}", "{}", "{a}b", "a{b}c{d}", "}{", "{{}}", "*", "?[",
		"\x00", "\xff\xfe", "line\nbreak", "ünïcødé", "reservation-x", strings.Repeat("x", reservation.MaxResourceLen),
		strings.Repeat("{", reservation.MaxResourceLen+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c := fuzzClient(t, "fuzz-name-")
		rdb := fuzzRedis(t)
		ctx := context.Background()
		r, ok, err := tryLock(ctx, c, name)
		if name == "" || len(name) > reservation.MaxResourceLen {
			if ok || r != nil || !errors.Is(err, reservation.ErrInvalidResource) {
				t.Fatalf("Lock(%d bytes) = %v, %v; want false, ErrInvalidResource", len(name), ok, err)
			}
			if _, err := c.Status(ctx, name); !errors.Is(err, reservation.ErrInvalidResource) {
				t.Fatalf("Status(%d bytes) = %v; want ErrInvalidResource", len(name), err)
			}
			return
		}
		if err != nil || !ok {
			t.Fatalf("Lock(%q) = %v, %v; want true, nil", name, ok, err)
		}
		if got, want := r.Key(), "fuzz-name-"+name; got != want {
			t.Errorf("Key() = %q, want %q", got, want)
		}
		if got := rdb.Get(ctx, r.Key()).Val(); got != r.Holder() {
			t.Errorf("key of %q holds %q, want %q", name, got, r.Holder())
		}
		if _, ok, err := tryLock(ctx, c, name); ok || err != nil {
			t.Errorf("second Lock(%q) = %v, %v; want false, nil", name, ok, err)
		}
		in, err := c.Status(ctx, name)
		if err != nil || !in.Held || in.Holder != r.Holder() || in.Token != r.Token() || in.Resource != name {
			t.Errorf("Status(%q) = %+v, %v; want held by %s with token %d", name, in, err, r.Holder(), r.Token())
		}
		if err := r.Release(ctx); err != nil {
			t.Fatalf("Release(%q): %v", name, err)
		}
		if n := rdb.Exists(ctx, r.Key()).Val(); n != 0 {
			t.Errorf("key of %q still there after Release", name)
		}
		if err := r.Release(ctx); !errors.Is(err, reservation.ErrNotHeld) {
			t.Errorf("second Release(%q) = %v, want ErrNotHeld", name, err)
		}
	})
}

// Any address: New answers a Client or an error wrapping ErrInvalidOptions,
// never a panic, and its error never holds the password of the address.
func FuzzNew(f *testing.F) {
	for _, s := range []string{"127.0.0.1:6379", "localhost:1", "[::1]:6379", "redis://127.0.0.1:6379/0",
		"redis://user:pw-secret-1@h:1/2", "rediss://:pw-secret-2@h:6380", "redis://h:notaport", "redis://h/notadb",
		"redis://h?dial_timeout=x", "unix:///tmp/redis.sock", "http://h:1", "", ":", "host:", ":6379", "a b:1",
		"user:pw-secret-3@127.0.0.1:6379", "redis://u:pw\"secret-4@h:badport", "redis://u:pw%zzsecret-5@h:1",
		"redis://u:pw secret-6@h:1", "redis://%@h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		c, err := reservation.New(addr, &reservation.Options{By: "fuzz", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			if c != nil {
				t.Errorf("New(%q) = a Client and %v", addr, err)
			}
			if !errors.Is(err, reservation.ErrInvalidOptions) {
				t.Errorf("New(%q) = %v, want an error wrapping ErrInvalidOptions", addr, err)
			}
			if pw := password(addr); pw != "" && (strings.Contains(err.Error(), pw) ||
				strings.Contains(err.Error(), strings.Trim(strconv.Quote(pw), `"`))) {
				t.Errorf("New(%q) error shows the password %q: %v", addr, pw, err)
			}
			return
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close of a Client that never connected: %v", err)
		}
	})
}

// password answers the password in addr's user information, when it is
// long enough to be told from the rest of the address.
func password(addr string) string {
	rest := addr
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return ""
	}
	_, pw, ok := strings.Cut(rest[:at], ":")
	if !ok || len(pw) < 6 || strings.Contains(rest[at:], pw) || strings.Contains(addr[:len(addr)-len(rest)], pw) {
		return ""
	}
	return pw
}

// Any durations and names in Options: New validates them (an error wrapping
// ErrInvalidOptions) or the Client runs with them in range, never a panic
// and never a silent correction.
func FuzzOptions(f *testing.F) {
	f.Add("w", int64(0), int64(0), int64(0), int64(0), "")
	f.Add("w", int64(30*time.Second), int64(10*time.Second), int64(time.Second), int64(time.Minute), "p-")
	f.Add("w", int64(time.Millisecond), int64(time.Microsecond), int64(time.Millisecond), int64(-1), "{")
	f.Add("w", int64(time.Second), int64(time.Second), int64(0), int64(0), "")
	f.Add("w", int64(1500*time.Microsecond), int64(0), int64(0), int64(0), "")
	f.Add("", int64(0), int64(0), int64(0), int64(0), "")
	f.Add(strings.Repeat("b", 257), int64(0), int64(0), int64(0), int64(0), "")
	f.Add("w", int64(-time.Second), int64(-1), int64(-1), int64(time.Nanosecond), "")
	f.Add("w", int64(reservation.MaxTTL+time.Millisecond), int64(0), int64(0), int64(0), "")
	f.Add("w", int64(1<<62), int64(1<<62), int64(1<<62), int64(1<<62), "")
	f.Fuzz(func(t *testing.T, by string, ttl, hb, retry, guard int64, prefix string) {
		in := reservation.Options{By: by, TTL: time.Duration(ttl), HeartbeatInterval: time.Duration(hb),
			RetryInterval: time.Duration(retry), RestartGuard: time.Duration(guard), Prefix: prefix,
			Logger: slog.New(slog.DiscardHandler)}
		c, err := reservation.New("127.0.0.1:1", &in)
		if err != nil {
			if !errors.Is(err, reservation.ErrInvalidOptions) {
				t.Errorf("New(%+v) = %v, want an error wrapping ErrInvalidOptions", in, err)
			}
			return
		}
		defer c.Close()
		o := c.Options()
		margin := o.TTL/100 + o.DriftMargin
		switch {
		case by != "" && o.By != by || by == "" && o.By == "" || len(by) > reservation.MaxByLen:
			t.Errorf("By %q accepted as %q", by, o.By)
		case o.TTL < reservation.MinTTL || o.TTL > reservation.MaxTTL || o.TTL%time.Millisecond != 0:
			t.Errorf("TTL %v accepted as %v", in.TTL, o.TTL)
		case in.TTL != 0 && o.TTL != in.TTL:
			t.Errorf("TTL %v corrected to %v", in.TTL, o.TTL)
		case o.HeartbeatInterval <= 0 || o.HeartbeatInterval >= o.TTL-margin:
			t.Errorf("heartbeat %v accepted with TTL %v", o.HeartbeatInterval, o.TTL)
		case in.HeartbeatInterval != 0 && o.HeartbeatInterval != in.HeartbeatInterval:
			t.Errorf("heartbeat %v corrected to %v", in.HeartbeatInterval, o.HeartbeatInterval)
		case o.RetryInterval < time.Millisecond || in.RetryInterval != 0 && o.RetryInterval != in.RetryInterval:
			t.Errorf("retry interval %v accepted as %v", in.RetryInterval, o.RetryInterval)
		case in.RestartGuard != 0 && o.RestartGuard != in.RestartGuard:
			t.Errorf("restart guard %v corrected to %v", in.RestartGuard, o.RestartGuard)
		case o.RestartGuard > 0 && o.RestartGuard < time.Millisecond:
			t.Errorf("restart guard %v accepted", o.RestartGuard)
		case prefix != "" && o.Prefix != prefix || prefix == "" && o.Prefix != reservation.DefaultPrefix:
			t.Errorf("prefix %q accepted as %q", prefix, o.Prefix)
		}
	})
}

// What the scripts do not expect at the keys they touch: a key of another
// type, or a value written by someone else, at the reservation key or its
// fencing companion, before or while it is held. Lock answers false or an
// error (never true), Release answers ErrNotHeld, the foreign key is left
// exactly as it was, and a failed Lock leaves no key of ours behind.
func FuzzForeignValue(f *testing.F) {
	for kind := range uint8(foreignKinds) {
		f.Add(kind, false, "someone-else", "job")
		f.Add(kind, true, "node-worker-1", "{tagged}job")
	}
	f.Add(uint8(0), true, "", "x")
	f.Add(uint8(0), false, "fuzz-0123456789abcdef01234567", "y")
	f.Add(uint8(fenceKinds), false, "99999999999999999", "numeric-fence")
	f.Add(uint8(fenceKinds+1), false, "not-a-token", "string-fence")
	f.Fuzz(func(t *testing.T, kind uint8, whileHeld bool, value, name string) {
		if name == "" || len(name) > 100 {
			return
		}
		kind %= foreignKinds
		ctx := context.Background()
		c := fuzzClient(t, "fuzz-foreign-")
		rdb := fuzzRedis(t)
		key := c.Key(name)
		at := key
		if kind >= fenceKinds {
			at = "{" + key + "}:fence" // the companion of a key without braces
			if strings.ContainsAny(key, "{}") {
				return
			}
		}
		t.Cleanup(func() { rdb.Del(context.Background(), key, at) })
		rdb.Del(ctx, key, at)

		var r *reservation.Reservation
		if whileHeld {
			var ok bool
			var err error
			if r, ok, err = tryLock(ctx, c, name); err != nil || !ok {
				t.Fatalf("Lock(%q) = %v, %v; want true", name, ok, err)
			}
		}
		writeForeign(t, rdb, kind, at, value)
		before := rdb.Dump(ctx, at).Val()

		// A number at the fencing key is a token, whoever wrote it.
		foreignToken, numeric := int64(0), false
		if kind >= fenceKinds && kind%fenceKinds <= 1 {
			if n, perr := strconv.ParseInt(strings.TrimSpace(value), 10, 64); perr == nil {
				foreignToken, numeric = n, true
			}
		}
		got, ok, err := tryLock(ctx, c, name)
		switch {
		case ok || got != nil:
			if kind < fenceKinds || whileHeld || !numeric {
				t.Fatalf("Lock(%q) over a foreign value (kind %d, %q) = true", name, kind, value)
			}
			// Only a number at the fencing key: acquiring is fine, as long
			// as the token still grows past it.
			if got.Token() <= foreignToken {
				t.Errorf("token %d after a token %d at the fencing key, want it greater", got.Token(), foreignToken)
			}
			if err := got.Release(ctx); err != nil {
				t.Errorf("Release: %v", err)
			}
		case err != nil:
			if strings.Contains(err.Error(), "panic") {
				t.Errorf("Lock error: %v", err)
			}
			if !whileHeld {
				if v := rdb.Get(ctx, key).Val(); strings.HasPrefix(v, "fuzz-") {
					t.Errorf("Lock(%q) failed (%v) but left our key %q behind", name, err, v)
				}
			}
		}
		if r != nil {
			err := r.Release(ctx)
			if kind < fenceKinds && !errors.Is(err, reservation.ErrNotHeld) {
				t.Errorf("Release of a reservation whose key was overwritten (kind %d) = %v, want ErrNotHeld", kind, err)
			}
		}
		if kind >= fenceKinds && !ok && err == nil {
			return // someone holds the key
		}
		if after := rdb.Dump(ctx, at).Val(); !ok && after != before {
			t.Errorf("the foreign value (kind %d) at %q changed", kind, at)
		}
	})
}

// Kinds of foreign values: below fenceKinds at the reservation key, the
// others at its fencing companion.
const (
	fenceKinds   = 7
	foreignKinds = 10
)

// writeForeign replaces whatever is at key by a value of kind, at once
// (MULTI), as another client would.
func writeForeign(t *testing.T, rdb *redis.Client, kind uint8, key, value string) {
	t.Helper()
	ctx := context.Background()
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		switch kind % fenceKinds {
		case 0:
			p.Set(ctx, key, value, 0)
		case 1:
			p.Set(ctx, key, value, time.Minute)
		case 2:
			p.HSet(ctx, key, "f", value)
		case 3:
			p.RPush(ctx, key, value)
		case 4:
			p.SAdd(ctx, key, value)
		case 5:
			p.ZAdd(ctx, key, redis.Z{Score: 1, Member: value})
		case 6:
			p.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []string{"f", value}})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("write kind %d at %q: %v", kind, key, err)
	}
}

// tryLock is TryLock with its outcome split the way these tests check it:
// ok reports whether it was acquired, and a resource held by someone else
// (ErrNotAcquired) is not an error.
func tryLock(ctx context.Context, c *reservation.Client, resource string) (*reservation.Reservation, bool, error) {
	r, err := c.TryLock(ctx, resource)
	if errors.Is(err, reservation.ErrNotAcquired) {
		return nil, false, nil
	}
	return r, err == nil, err
}
