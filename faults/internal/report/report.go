// Package report carries the result of one fault scenario from the test
// that ran it to the table of docs/RELIABILITY.md: each scenario prints one
// line "reliability-summary: {json}" on standard output, and the
// reliability-table command collects those lines from `go test -v` (or
// `go test -json`) and renders the table.
package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Marker starts a summary line.
const Marker = "reliability-summary: "

// Check is one scenario-specific check, such as "loss reported before the
// key expired on the server", made Checked times.
type Check struct {
	Name    string `json:"name"`
	Checked int    `json:"checked"`
	Failed  int    `json:"failed"`
	// Worst is the worst value measured, for the table ("headroom 6.1ms").
	Worst string `json:"worst,omitempty"`
}

// Summary is the result of one fault scenario.
type Summary struct {
	// Order sorts the table: the fault's number in the issue.
	Order    int    `json:"order"`
	Test     string `json:"test"`
	Scenario string `json:"scenario"`
	Duration string `json:"duration"`
	Workers  int    `json:"workers"`
	// Faults is how many times the fault was injected.
	Faults int `json:"faults"`

	Holdings   int    `json:"holdings"`
	Resources  int    `json:"resources"`
	Released   int    `json:"released"`
	Lost       int    `json:"lost"`
	Crashed    int    `json:"crashed"`
	Excused    int    `json:"excused"`
	Violations int    `json:"violations"`
	Porcupine  string `json:"porcupine"`

	Checks []Check `json:"checks,omitempty"`
	Pass   bool    `json:"pass"`
}

// Line returns s as a summary line, without the newline.
func (s Summary) Line() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a Summary always marshals
	}
	return Marker + string(b)
}

// Parse reads go test output, plain (-v) or JSON (-json), and returns the
// summaries it holds, and the names of the tests that failed.
func Parse(r io.Reader) (sums []Summary, failed []string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	seen := map[string]bool{}
	var partial string // -json splits long output lines
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "{") {
			var ev struct {
				Action, Package, Test, Output string
			}
			if json.Unmarshal([]byte(line), &ev) == nil {
				if ev.Action == "fail" {
					name := ev.Test
					if name == "" {
						name = "package " + ev.Package
					}
					if !seen["fail:"+name] {
						seen["fail:"+name] = true
						failed = append(failed, name)
					}
				}
				if ev.Action != "output" {
					continue
				}
				partial += ev.Output
				if !strings.HasSuffix(partial, "\n") {
					continue
				}
				line, partial = strings.TrimSuffix(partial, "\n"), ""
			}
		}
		if pkg, ok := strings.CutPrefix(line, "FAIL\t"); ok {
			// The package failed after its tests passed (goleak, TestMain).
			name := "package " + strings.Fields(pkg)[0]
			if !seen["fail:"+name] {
				seen["fail:"+name] = true
				failed = append(failed, name)
			}
		}
		if i := strings.Index(line, "--- FAIL: "); i >= 0 {
			name, _, _ := strings.Cut(line[i+len("--- FAIL: "):], " ")
			if !seen["fail:"+name] {
				seen["fail:"+name] = true
				failed = append(failed, name)
			}
		}
		i := strings.Index(line, Marker)
		if i < 0 {
			continue
		}
		var s Summary
		if err := json.Unmarshal([]byte(line[i+len(Marker):]), &s); err != nil {
			return nil, nil, fmt.Errorf("report: bad summary line %q: %w", line, err)
		}
		sums = append(sums, s)
	}
	slices.SortStableFunc(sums, func(a, b Summary) int { return a.Order - b.Order })
	return sums, failed, sc.Err()
}

// Markdown renders the summaries as a Markdown table, followed by the
// tests that failed without a summary.
func Markdown(sums []Summary, failed []string) string {
	var b strings.Builder
	b.WriteString("| # | Scenario | Faults injected | Workers | Holdings checked (released / lost / killed) | Stale holders fenced off | Scenario checks | Overlaps, token or report violations | Porcupine | Result |\n")
	b.WriteString("| --- | --- | ---: | ---: | --- | ---: | --- | ---: | --- | --- |\n")
	summarised := map[string]bool{}
	failedSet := map[string]bool{}
	for _, name := range failed {
		failedSet[name] = true
	}
	for _, s := range sums {
		summarised[s.Test] = true
		var checks []string
		for _, c := range s.Checks {
			txt := fmt.Sprintf("%s: %d/%d", c.Name, c.Checked-c.Failed, c.Checked)
			if c.Worst != "" {
				txt += " (" + c.Worst + ")"
			}
			checks = append(checks, txt)
		}
		result := "pass"
		if !s.Pass || failedSet[s.Test] {
			result = "**FAIL**"
		}
		// "illegal (see /tmp/...html)": the file is the run's, not the page's.
		lin, _, _ := strings.Cut(s.Porcupine, " (see ")
		fmt.Fprintf(&b, "| %d | %s | %d | %d | %d (%d / %d / %d) | %d | %s | %d | %s | %s |\n",
			s.Order, s.Scenario, s.Faults, s.Workers, s.Holdings, s.Released, s.Lost, s.Crashed,
			s.Excused, strings.Join(checks, "; "), s.Violations, lin, result)
	}
	for _, name := range failed {
		top, _, _ := strings.Cut(name, "/")
		if summarised[name] || summarised[top] {
			continue
		}
		fmt.Fprintf(&b, "| - | %s (no summary) | | | | | | | | **FAIL** |\n", name)
	}
	return b.String()
}
