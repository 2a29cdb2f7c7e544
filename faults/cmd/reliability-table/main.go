// Command reliability-table renders the results of the fault scenarios as
// the Markdown table of docs/RELIABILITY.md. It reads the output of
// `go test -v` (or `go test -json`) of the faults module on standard input,
// copies it to standard error so that the run stays visible, and prints the
// table on standard output:
//
//	cd faults && go test -count=1 -v -run Fault . | go run ./cmd/reliability-table
//
// It exits with status 1 when a scenario failed or none was found.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/redis-reservation/reservation/faults/internal/report"
)

func main() {
	sums, failed, err := report.Parse(io.TeeReader(os.Stdin, os.Stderr))
	if err != nil {
		fmt.Fprintln(os.Stderr, "reliability-table:", err)
		os.Exit(1)
	}
	if len(sums) == 0 && len(failed) == 0 {
		fmt.Fprintln(os.Stderr, "reliability-table: no scenario summary in the input: run go test with -v")
		os.Exit(1)
	}
	fmt.Print(report.Markdown(sums, failed))
	ok := len(failed) == 0
	for _, s := range sums {
		ok = ok && s.Pass
	}
	if !ok {
		os.Exit(1)
	}
}
