package reservation

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/redis-reservation/reservation/internal/redistest"
)

// What the event hook costs when nobody listens: no OnEvent, and a log at
// the info level, which drops the debug events (acquired, released,
// extended, refused). Compare with a hook that does nothing:
//
//	go test -run '^$' -bench 'Emit|Hook' -benchmem -count 5 .

// infoLog is a log at the info level, as a service logs in production.
var infoLog = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))

// BenchmarkEmitUnused is emit of a renewal's event with no hook: it must
// not allocate.
func BenchmarkEmitUnused(b *testing.B) {
	o, err := (&Options{By: "bench", Logger: infoLog}).withDefaults()
	if err != nil {
		b.Fatal(err)
	}
	c := newClient(nil, o)
	b.Cleanup(c.cancel)
	e := Event{Kind: EventExtended, Resource: "job", Key: "reservation-job", Holder: "bench-1", Token: 1, Duration: time.Millisecond}
	b.ReportAllocs()
	for b.Loop() {
		c.emit(e)
	}
	if n := testing.AllocsPerRun(100, func() { c.emit(e) }); n != 0 {
		b.Errorf("emit with no hook: %v allocations; want 0", n)
	}
}

// BenchmarkHook is TryLock and Release on a real server, and TryLock
// refused, without a hook and with one that does nothing.
func BenchmarkHook(b *testing.B) {
	srv := redistest.Start(b)
	for _, bc := range []struct {
		name string
		hook func(Event)
	}{{"none", nil}, {"noop", func(Event) {}}} {
		c, err := New(srv.URL(), &Options{By: "bench", Logger: infoLog, OnEvent: bc.hook, RestartGuard: -1})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.Run("cycle/"+bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r, err := c.TryLock(ctx, "bench-cycle")
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("refused/"+bc.name, func(b *testing.B) {
			r, err := c.TryLock(ctx, "bench-held")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.TryLock(ctx, "bench-held"); !errors.Is(err, ErrNotAcquired) {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			_ = r.Release(ctx)
		})
		_ = c.Close()
	}
}
