package prometheus_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	prom "github.com/prometheus/client_golang/prometheus"

	reservationprom "github.com/redis-reservation/reservation/metrics/prometheus"
)

// TestAlertsNameExportedMetrics reads the example alerting rules in
// docs/OPERATIONS.md and checks that every metric they name is one that
// the adapter exports (a histogram's _bucket, _sum and _count included).
func TestAlertsNameExportedMetrics(t *testing.T) {
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "\n## Alerts\n")
	if !ok {
		t.Fatal("docs/OPERATIONS.md has no Alerts section")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("the Alerts section has no yaml block")
	}
	reg := prom.NewRegistry()
	if _, err := reservationprom.New(reg, nil); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				exported[f.GetName()+s] = true
			}
		}
	}
	named := regexp.MustCompile(`\breservation_[a-z_]+`).FindAllString(block, -1)
	if len(named) < 4 {
		t.Fatalf("the alerts name %d metrics: %q; want at least 4", len(named), named)
	}
	for _, name := range named {
		if !exported[name] {
			t.Errorf("the alerts in docs/OPERATIONS.md name %s, which the adapter does not export", name)
		}
	}
}
