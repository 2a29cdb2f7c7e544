package report

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	a := Summary{Order: 2, Test: "TestB", Scenario: "b", Holdings: 7, Pass: true,
		Checks: []Check{{Name: "c", Checked: 3, Failed: 1, Worst: "worst 1ms"}}}
	b := Summary{Order: 1, Test: "TestA/x", Scenario: "a", Holdings: 5, Pass: true}
	plain := "=== RUN   TestB\n" + a.Line() + "\n--- PASS: TestB (1.00s)\n" +
		"=== RUN   TestA/x\n" + b.Line() + "\n    --- FAIL: TestA/x (1.00s)\n--- FAIL: TestC (0.5s)\nFAIL\nFAIL\texample.com/p\t1.0s\n"

	var js strings.Builder
	for _, line := range strings.SplitAfter(plain, "\n") {
		if line == "" {
			continue
		}
		// go test -json splits long lines: do it too.
		for len(line) > 40 {
			ev, _ := json.Marshal(map[string]string{"Action": "output", "Output": line[:40]})
			js.Write(append(ev, '\n'))
			line = line[40:]
		}
		ev, _ := json.Marshal(map[string]string{"Action": "output", "Output": line})
		js.Write(append(ev, '\n'))
	}

	for name, in := range map[string]string{"plain": plain, "json": js.String()} {
		t.Run(name, func(t *testing.T) {
			sums, failed, err := Parse(strings.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			if len(sums) != 2 || sums[0].Test != "TestA/x" || sums[1].Test != "TestB" || sums[1].Checks[0].Failed != 1 {
				t.Fatalf("summaries = %+v, want TestA/x then TestB", sums)
			}
			if strings.Join(failed, ",") != "TestA/x,TestC,package example.com/p" {
				t.Errorf("failed = %v, want TestA/x, TestC, package example.com/p", failed)
			}
			md := Markdown(sums, failed)
			for _, want := range []string{"| 1 | a |", "**FAIL**", "c: 2/3 (worst 1ms)", "TestC (no summary)"} {
				if !strings.Contains(md, want) {
					t.Errorf("table lacks %q:\n%s", want, md)
				}
			}
			if strings.Contains(md, "TestA/x (no summary)") {
				t.Errorf("a failed test with a summary is listed twice:\n%s", md)
			}
		})
	}
}
