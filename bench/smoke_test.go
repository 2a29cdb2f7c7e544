package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs every scenario against every library very briefly, on a
// real redis-server, and writes the report and the plot, so that the
// harness never rots. It asserts nothing about speed: only that every run
// worked, that the report has every table, that every waiter of this
// library was woken in scenarios 5, 5k and 6, that it lost nothing in
// scenario 7, and that it noticed every loss of scenario 8.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := smokeConfig()
	rep, err := run(ctx, cfg, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.failed {
		t.Errorf("round %d, scenario %s, %s: %v", r.Round, r.Scenario, r.Lib, r.Err)
	}
	rep.command = "go test ./..."
	dir := t.TempDir()
	png := filepath.Join(dir, "handoff.png")
	if err := rep.plotHandoffs(png); err != nil {
		t.Fatalf("plot: %v", err)
	}
	if fi, err := os.Stat(png); err != nil || fi.Size() == 0 {
		t.Fatalf("plot: %v, %v", fi, err)
	}
	md := filepath.Join(dir, "PERFORMANCE.md")
	if err := os.WriteFile(md, []byte("# Performance\n\nprose\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second write replaces the first
		if err := writeBetweenMarkers(md, rep.markdown()); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(md)
	text := string(b)
	if got := strings.Count(text, beginMarker); got != 1 {
		t.Errorf("report has %d results sections, want 1", got)
	}
	if !strings.HasPrefix(text, "# Performance\n\nprose\n") {
		t.Errorf("report lost the text around the results")
	}
	for _, s := range cfg.scenarios {
		heading := s
		if isLossNotice(s) {
			heading = "8" // one table, a row per foreign write
		}
		if !strings.Contains(text, "### Scenario "+heading+":") {
			t.Errorf("report has no table for scenario %s", s)
		}
		for _, lib := range cfg.libs {
			if !runs(lib, s) {
				continue
			}
			rs := rep.results[s][lib]
			if len(rs) == 0 || rs[0].Ops == 0 {
				t.Errorf("scenario %s, %s: no operation measured", s, lib)
			}
		}
	}
	// Scenarios 5, 5k and 6: a waiter of this library that was never woken
	// (not holding the resource within giveUp of the expiry or the DEL)
	// is a failure, not a slow figure. Peers are not held to it
	// (rueidislock is never woken among many keys with a TTL, 5k).
	for _, s := range []string{"5", "5k", "6"} {
		for _, r := range rep.results[s][libOurs] {
			if r.Timeouts != 0 {
				t.Errorf("scenario %s: %d of %d waiters of this library never woken within %v", s, r.Timeouts, r.Ops, cfg.giveUp)
			}
		}
	}
	for _, r := range rep.results["7"][libOurs] {
		if r.Lost != 0 {
			t.Errorf("scenario 7: this library lost %d of %d reservations", r.Lost, r.Holding)
		}
	}
	// Scenario 8: every foreign write ended the reservations it hit, and
	// each holder was told (Done closed, Err matching ErrLost) within
	// giveUp8, long before any renewal. Speed is not checked.
	for _, s := range lossScenarios {
		for _, r := range rep.results[s][libOurs] {
			if r.Timeouts != 0 {
				t.Errorf("scenario %s: %d of %d losses not noticed within %v", s, r.Timeouts, r.Ops, cfg.giveUp8)
			}
			if r.Causes != 0 {
				t.Errorf("scenario %s: %d of %d losses ended with an error that does not match ErrLost", s, r.Causes, r.Ops)
			}
		}
	}
	if testing.Verbose() {
		t.Log("\n" + text)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
