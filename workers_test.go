package reservation

import (
	"testing"
	"time"
)

// TestWorkersReuseAnIdleWorker: work given while a worker is idle runs on
// it, not on a new goroutine; work given while every worker is busy gets
// one of its own; stop ends the idle ones at once, and work given after
// stop still runs.
func TestWorkersReuseAnIdleWorker(t *testing.T) {
	w := newWorkers()
	done := make(chan struct{})
	const runs = 5
	for range runs {
		w.run(func() { done <- struct{}{} })
		<-done
		untilIdle(t, w, 1)
		// A worker counts itself idle just before it waits: give it the
		// moment to get there.
		time.Sleep(5 * time.Millisecond)
	}
	// One new goroutine, or two if a run came in that moment anyway; a
	// goroutine each would be 5.
	if got := w.started.Load(); got > 2 {
		t.Fatalf("%d runs one after another started %d goroutines, want 1 (2 at most)", runs, got)
	}

	release := make(chan struct{})
	for range 2 {
		w.run(func() { <-release; done <- struct{}{} })
	}
	close(release)
	<-done
	<-done

	// stop ends the idle workers at once, not when they would have
	// ended on their own (workerIdle): Close waits for it.
	stopped := make(chan struct{})
	go func() { w.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(workerIdle / 2):
		t.Fatalf("stop did not return within %v: the idle workers did not end", workerIdle/2)
	}
	if got := w.idle.Load(); got != 0 {
		t.Fatalf("%d workers idle after stop, want 0", got)
	}
	ran := make(chan struct{})
	w.run(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("work given after stop did not run")
	}
	w.stop() // again: returns once that work's goroutine has ended
}

// untilIdle waits until n of w's workers wait for work.
func untilIdle(t *testing.T, w *workers, n int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); w.idle.Load() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers idle, want %d", w.idle.Load(), n)
		}
	}
}
