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
// worked, that the report has every table, and that this library lost
// nothing in scenario 7.
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
		if !strings.Contains(text, "### Scenario "+s+":") {
			t.Errorf("report has no table for scenario %s", s)
		}
		for _, lib := range cfg.libs {
			if isRaw(lib) && s != "1" && s != "2" {
				continue
			}
			rs := rep.results[s][lib]
			if len(rs) == 0 || rs[0].Ops == 0 {
				t.Errorf("scenario %s, %s: no operation measured", s, lib)
			}
		}
	}
	for _, r := range rep.results["7"][libOurs] {
		if r.Lost != 0 {
			t.Errorf("scenario 7: this library lost %d of %d reservations", r.Lost, r.Holding)
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
