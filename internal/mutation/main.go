// Command mutation checks that the test suite catches deliberate breaks of
// the library: each mutant in mutants.go is applied to a scratch copy of the
// repository, and the tests that should catch it are run there. The check
// fails when a mutant survives (its tests pass), and when a mutant no longer
// applies (its text is not found exactly once), so that the list cannot rot
// silently. The library holds no mutation hooks: mutants are plain text
// replacements.
//
// Usage, from the repository's root:
//
//	go run ./internal/mutation                 # every mutant
//	go run ./internal/mutation -run lifo       # mutants whose name matches
//	go run ./internal/mutation -list           # the table, as Markdown
//
// Tests run without -race (faster) and with a time budget per mutant; a
// mutant whose tests run out of time counts as caught only if they failed.
// Two mutants are tested at once (-parallel), each in a scratch copy of its
// own: the tests of one mutant mostly wait on Redis, timers and the
// compiler's single-threaded steps, and leave a CPU idle. A mutant whose
// tests are fault scenarios runs alone.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	run := flag.String("run", "", "only the mutants whose name matches this regular expression")
	list := flag.Bool("list", false, "print the mutants and their tests as a Markdown table, and exit")
	budget := flag.Duration("budget", 3*time.Minute, "time budget of one mutant's tests")
	verbose := flag.Bool("v", false, "print the output of the tests of each mutant")
	parallel := flag.Int("parallel", 2, "how many mutants to test at once, each in a scratch copy of its own")
	flag.Parse()
	if *list {
		printTable()
		return
	}
	os.Exit(check(*run, *budget, *parallel, *verbose))
}

// check applies every selected mutant and returns the exit code.
func check(pattern string, budget time.Duration, parallel int, verbose bool) int {
	re, err := regexp.Compile(pattern)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutation: -run:", err)
		return 2
	}
	root, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutation:", err)
		return 2
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		fmt.Fprintln(os.Stderr, "mutation: run it from the repository's root")
		return 2
	}
	var selected []mutant
	for _, m := range mutants {
		if re.MatchString(m.name) {
			selected = append(selected, m)
		}
	}
	// Each runner has one scratch copy, and puts each mutant back after
	// its tests: in the same directory, the packages a mutant leaves alone
	// are found in the build cache, and only the mutated ones are compiled
	// again.
	dirs := make([]string, max(min(parallel, len(selected)), 1))
	for i := range dirs {
		dir, err := os.MkdirTemp("", "mutant-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "mutation:", err)
			return 2
		}
		defer os.RemoveAll(dir)
		if err := copyTree(root, dir); err != nil {
			fmt.Fprintln(os.Stderr, "mutation: copy the repository:", err)
			return 2
		}
		dirs[i] = dir
	}
	// On an early return, the runners' tests are stopped and waited for
	// before their copies are removed.
	ctx, cancel := context.WithCancel(context.Background())
	var runners sync.WaitGroup
	defer runners.Wait()
	defer cancel()
	type outcome struct {
		res  result
		out  string
		took time.Duration
		err  error
		done chan struct{}
	}
	outcomes := make([]outcome, len(selected))
	next := make(chan int, len(selected))
	for i := range selected {
		outcomes[i].done = make(chan struct{})
		next <- i
	}
	close(next)
	start := time.Now()
	// The mutants whose tests are fault scenarios run alone: they check
	// timings on CPUs of their own (see pinCPUs in faults/), and a test
	// failing for want of CPU would hide a mutant that survives.
	var gate sync.RWMutex
	for _, dir := range dirs {
		runners.Add(1)
		go func() {
			defer runners.Done()
			for i := range next {
				if ctx.Err() != nil {
					return // the check is over
				}
				m, o := selected[i], &outcomes[i]
				lock, unlock := gate.RLock, gate.RUnlock
				if m.alone() {
					lock, unlock = gate.Lock, gate.Unlock
				}
				lock()
				t0 := time.Now()
				o.res, o.out, o.err = apply(ctx, dir, m, budget)
				o.took = time.Since(t0).Round(100 * time.Millisecond)
				unlock()
				close(o.done)
				if o.err != nil {
					return // its copy is not the repository's any more
				}
			}
		}()
	}
	// The outcomes are printed in the list's order, as they come.
	var survived, broken, killed int
	for i, m := range selected {
		o := &outcomes[i]
		<-o.done
		if o.err != nil {
			fmt.Fprintf(os.Stderr, "mutation: put %s back: %v\n", m.name, o.err)
			return 2
		}
		switch o.res {
		case killedResult:
			killed++
			fmt.Printf("killed    %-28s %6v  %s\n", m.name, o.took, m.why)
		case survivedResult:
			survived++
			fmt.Printf("SURVIVED  %-28s %6v  %s\n", m.name, o.took, m.why)
		default:
			broken++
			fmt.Printf("STALE     %-28s %6v  %s\n", m.name, o.took, o.out)
		}
		if verbose || o.res == survivedResult {
			fmt.Println(indent(o.out))
		}
	}
	fmt.Printf("%d killed, %d survived, %d stale, in %v\n", killed, survived, broken, time.Since(start).Round(time.Second))
	if survived > 0 || broken > 0 {
		return 1
	}
	return 0
}

type result int

const (
	killedResult result = iota
	survivedResult
	staleResult
)

// apply applies m to dir, a scratch copy of the repository, runs m's
// tests there, and puts back the files it changed. It returns what came of
// it and the tests' output (or why m does not apply); err is not nil only
// when a file could not be put back.
func apply(ctx context.Context, dir string, m mutant, budget time.Duration) (res result, out string, err error) {
	originals := map[string][]byte{}
	defer func() {
		for path, b := range originals {
			if werr := os.WriteFile(path, b, 0o644); werr != nil && err == nil {
				err = werr
			}
		}
	}()
	for _, e := range m.edits {
		path := filepath.Join(dir, e.file)
		b, err := os.ReadFile(path)
		if err != nil {
			return staleResult, err.Error(), nil
		}
		if n := bytes.Count(b, []byte(e.old)); n != 1 {
			return staleResult, fmt.Sprintf("%s: the text to replace is found %d times, want once: %q", e.file, n, e.old), nil
		}
		if _, saved := originals[path]; !saved {
			originals[path] = b
		}
		b = bytes.Replace(b, []byte(e.old), []byte(e.new), 1)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return staleResult, err.Error(), nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	var buf bytes.Buffer
	for _, t := range m.tests {
		args := []string{"test", "-count=" + strconv.Itoa(max(t.count, 1)), "-failfast", "-timeout", budget.String(), "-run", t.run, t.pkg}
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = filepath.Join(dir, t.module)
		cmd.Stdout, cmd.Stderr = &buf, &buf
		cmd.WaitDelay = 5 * time.Second
		fmt.Fprintf(&buf, "$ (cd %s && go %s)\n", t.module, strings.Join(args, " "))
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			continue
		case errors.As(err, &ee) && strings.Contains(buf.String(), "\nFAIL"):
			if strings.Contains(buf.String(), "[build failed]") || strings.Contains(buf.String(), "[setup failed]") {
				return staleResult, "the mutant does not build:\n" + buf.String(), nil
			}
			return killedResult, buf.String(), nil
		default:
			return staleResult, fmt.Sprintf("tests did not run to the end (%v):\n%s", err, buf.String()), nil
		}
	}
	return survivedResult, buf.String(), nil
}

// copyTree copies the files of the repository at root into dir, leaving
// out .git and node_modules (the copy needs none of them: tests that need
// the Node worker are not among the mutants' tests).
func copyTree(root, dir string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), b, 0o644)
	})
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// printTable prints the mutants as a Markdown table.
func printTable() {
	fmt.Println("| mutant | the break | the tests that must catch it |")
	fmt.Println("| --- | --- | --- |")
	for _, m := range mutants {
		var ts []string
		for _, t := range m.tests {
			where := t.pkg
			if t.module != "." {
				where = t.module + "/" + strings.TrimPrefix(t.pkg, "./")
			}
			ts = append(ts, fmt.Sprintf("`%s` in `%s`", t.run, where))
		}
		fmt.Printf("| %s | %s | %s |\n", m.name, m.why, strings.Join(ts, "; "))
	}
}
