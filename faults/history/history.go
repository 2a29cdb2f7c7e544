// Package history records every holding of a reservation during a fault
// test and checks the recorded history, the way etcd's robustness tests and
// Jepsen do: run traffic, inject faults, then validate what happened.
//
// A holding is one successful acquisition: its resource, holder value and
// fencing token, the instant it was acquired (the reply was received) and
// the instant it ended: the first release was sent, the loss was reported
// on Done, or its process was killed. All instants are wall-clock
// nanoseconds, so that events from worker processes on the same machine can
// be compared with those of the test process.
//
// Check fails on:
//   - two holdings of one resource whose [acquired, end] intervals
//     intersect, unless the first holder was knowingly taken out of the
//     game (its process suspended, or its key deleted by another client)
//     before the second acquired, and the second's token is the greater
//     one: that is the stale holder that fencing tokens exist for;
//   - a token that is not greater than the token of the resource's
//     previous holding;
//   - a holding that never ended, or ended without its release or its
//     loss being reported: a release that found the key gone while the
//     holder still had validity left, with no fault to explain it;
//   - a loss whose cause is not reservation.ErrLost.
//
// It also checks the same history for linearizability against a lock model
// with porcupine (see Linearizable).
package history

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Kind says what an Event records.
type Kind string

// Kinds of events.
const (
	// Acquired: Holder got Resource with Token. Call is when the Lock or
	// WaitUntilLock call was made, At when its reply came back.
	Acquired Kind = "acquired"
	// Released: Holder gave its holding up. At is when the first release
	// was sent (the holder stopped using the resource then). Sent, Reply
	// and Validity describe the last attempt: when it was sent, when its
	// answer came back, and what Validity() said just before it was sent.
	// Outcome is "ok", "not-held" (ErrNotHeld) or "error".
	Released Kind = "released"
	// Lost: Holder saw its Done channel closed at At; Outcome is the
	// cause (Err()).
	Lost Kind = "lost"
	// Crashed: the process of Worker was killed (kill -9) at At: every
	// holding of Worker still open then ended then.
	Crashed Kind = "crashed"
	// Suspended: the process of Worker was stopped from At to Until
	// (SIGSTOP, SIGCONT), or its heartbeat was blocked: it could notice
	// nothing meanwhile.
	Suspended Kind = "suspended"
	// Revoked: another client deleted or overwrote the key of Holder, by
	// a command sent at At whose answer came back at Until. From At on,
	// another worker may acquire before Holder notices.
	Revoked Kind = "revoked"
	// DataLost: the server lost every key between At and Until (a
	// FLUSHALL, a restart without persistence). Unlike Revoked this
	// excuses no overlap: the restart guard must prevent them.
	DataLost Kind = "data-lost"
)

// Event is one entry of a history. Worker processes print events as JSON
// lines, and the test process adds them.
type Event struct {
	Kind     Kind   `json:"kind"`
	Worker   string `json:"worker,omitempty"`
	Resource string `json:"resource,omitempty"`
	Holder   string `json:"holder,omitempty"`
	Token    int64  `json:"token,omitempty"`
	Call     int64  `json:"call,omitempty"`
	At       int64  `json:"at"`
	Until    int64  `json:"until,omitempty"`
	Sent     int64  `json:"sent,omitempty"`
	Reply    int64  `json:"reply,omitempty"`
	Validity int64  `json:"validity,omitempty"`
	Outcome  string `json:"outcome,omitempty"`
}

// Outcomes of a Released event.
const (
	OutcomeOK      = "ok"
	OutcomeNotHeld = "not-held"
	OutcomeError   = "error"
)

// LostCause is the Outcome a Lost event must have: the text of
// reservation.ErrLost.
const LostCause = "reservation: lost"

// Now returns the current instant as an Event wants it.
func Now() int64 { return time.Now().UnixNano() }

// History is a concurrent-safe log of events.
type History struct {
	mu     sync.Mutex
	events []Event
}

// New returns an empty History.
func New() *History { return &History{} }

// Add records e.
func (h *History) Add(e Event) {
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
}

// AddJSON records an event printed as JSON by a worker process.
func (h *History) AddJSON(line []byte) error {
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		return fmt.Errorf("history: bad event %q: %w", line, err)
	}
	h.Add(e)
	return nil
}

// Events returns a copy of the events recorded so far.
func (h *History) Events() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}

// Holding is one acquisition, as rebuilt from the events.
type Holding struct {
	Worker, Resource, Holder string
	Token                    int64
	// Call is when the acquiring call was made, Acquired when it
	// answered.
	Call, Acquired int64
	// End is when the holding ended for its holder: first release sent,
	// loss reported, or process killed; 0 when it never did. EndKind says
	// which (Released, Lost, Crashed).
	End     int64
	EndKind Kind
	// Excused is the instant from which another worker may hold the
	// resource before End without a violation (the holder's process was
	// suspended, or its key revoked), 0 when none.
	Excused int64
	// LostAt is when a loss was reported, 0 when none.
	LostAt int64
	// Release is the Released event, if any.
	Release *Event
	// Cause is the Outcome of the Lost event.
	Cause string
}

// Violation is one failed check.
type Violation struct {
	Check    string `json:"check"` // overlap, token, unended, silent-loss, cause, event
	Resource string `json:"resource,omitempty"`
	Detail   string `json:"detail"`
}

func (v Violation) String() string {
	if v.Resource == "" {
		return v.Check + ": " + v.Detail
	}
	return fmt.Sprintf("%s on %q: %s", v.Check, v.Resource, v.Detail)
}

// Result is what Check found.
type Result struct {
	Holdings   int         `json:"holdings"`
	Resources  int         `json:"resources"`
	Workers    int         `json:"workers"`
	Released   int         `json:"released"`
	Lost       int         `json:"lost"`
	Crashed    int         `json:"crashed"`
	Excused    int         `json:"excused"` // overlaps with a stale, fenced-off holder
	Violations []Violation `json:"violations,omitempty"`
	// Holds are the holdings, ordered by resource then acquisition.
	Holds []*Holding `json:"-"`
}

// OK reports whether no check failed.
func (r *Result) OK() bool { return len(r.Violations) == 0 }

// String summarises r on one line.
func (r *Result) String() string {
	s := fmt.Sprintf("%d holdings of %d resources by %d workers: %d released, %d lost, %d crashed, %d stale overlaps excused by fencing",
		r.Holdings, r.Resources, r.Workers, r.Released, r.Lost, r.Crashed, r.Excused)
	if len(r.Violations) > 0 {
		s += fmt.Sprintf("; %d VIOLATIONS", len(r.Violations))
	}
	return s
}

// maxViolations bounds how many violations of one kind are listed.
const maxViolations = 20

// Check rebuilds the holdings from the events and checks them.
func (h *History) Check() *Result {
	events := h.Events()
	res := &Result{}
	add := func(v Violation) {
		n := 0
		for _, o := range res.Violations {
			if o.Check == v.Check {
				n++
			}
		}
		if n < maxViolations {
			res.Violations = append(res.Violations, v)
		}
	}
	holds, workers := build(events, add)
	res.Holds = holds
	res.Holdings = len(holds)
	res.Workers = len(workers)

	byRes := map[string][]*Holding{}
	for _, hd := range holds {
		byRes[hd.Resource] = append(byRes[hd.Resource], hd)
		switch {
		case hd.End == 0:
			add(Violation{"unended", hd.Resource, fmt.Sprintf("holding %s (token %d, acquired %s) never ended: no release, loss or crash recorded", hd.Holder, hd.Token, stamp(hd.Acquired))})
		case hd.EndKind == Released:
			res.Released++
		case hd.EndKind == Lost:
			res.Lost++
		case hd.EndKind == Crashed:
			res.Crashed++
		}
		if hd.LostAt != 0 && hd.Cause != LostCause {
			add(Violation{"cause", hd.Resource, fmt.Sprintf("holding %s ended on Done with cause %q, want %q", hd.Holder, hd.Cause, LostCause)})
		}
	}
	res.Resources = len(byRes)
	dataLost := filter(events, DataLost)
	for _, hd := range holds {
		if v, ok := silentLoss(hd, dataLost); ok {
			add(v)
		}
	}
	for _, resource := range sortedKeys(byRes) {
		list := byRes[resource]
		checkResource(resource, list, &res.Excused, add)
	}
	return res
}

// build rebuilds the holdings from events.
func build(events []Event, add func(Violation)) ([]*Holding, map[string]bool) {
	byHolder := map[string]*Holding{}
	var holds []*Holding
	workers := map[string]bool{}
	for _, e := range events {
		if e.Kind != Acquired {
			continue
		}
		if byHolder[e.Holder] != nil {
			add(Violation{"event", e.Resource, fmt.Sprintf("holder value %s acquired twice: holder values must be unique", e.Holder)})
			continue
		}
		hd := &Holding{Worker: e.Worker, Resource: e.Resource, Holder: e.Holder, Token: e.Token, Call: e.Call, Acquired: e.At}
		if hd.Call == 0 || hd.Call > hd.Acquired {
			hd.Call = hd.Acquired
		}
		byHolder[e.Holder] = hd
		holds = append(holds, hd)
		workers[e.Worker] = true
	}
	end := func(hd *Holding, at int64, kind Kind) {
		if hd.End == 0 || at < hd.End {
			hd.End, hd.EndKind = at, kind
		}
	}
	excuse := func(hd *Holding, at int64) {
		if hd.Excused == 0 || at < hd.Excused {
			hd.Excused = at
		}
	}
	for _, e := range events {
		switch e.Kind {
		case Released, Lost, Revoked:
			hd := byHolder[e.Holder]
			if hd == nil {
				if e.Kind != Revoked { // a revocation may hit a stranger's key
					add(Violation{"event", e.Resource, fmt.Sprintf("%s event for holder %q that never acquired", e.Kind, e.Holder)})
				}
				continue
			}
			switch e.Kind {
			case Released:
				hd.Release = &e
				end(hd, e.At, Released)
			case Lost:
				if hd.LostAt == 0 || e.At < hd.LostAt {
					hd.LostAt, hd.Cause = e.At, e.Outcome
				}
				end(hd, e.At, Lost)
			case Revoked:
				excuse(hd, e.At)
			}
		case Crashed, Suspended:
			workers[e.Worker] = true
			for _, hd := range holds {
				if hd.Worker != e.Worker || hd.Acquired > e.At {
					continue
				}
				if e.Kind == Crashed && (hd.End == 0 || hd.End > e.At) {
					end(hd, e.At, Crashed)
				}
				if e.Kind == Suspended && (hd.End == 0 || hd.End > e.At) {
					excuse(hd, e.At)
				}
			}
		}
	}
	for _, hd := range holds {
		if hd.Excused != 0 && hd.End != 0 && hd.Excused >= hd.End {
			hd.Excused = 0
		}
	}
	return holds, workers
}

// silentLoss reports a release that found the key gone or someone else's
// while the holder still had validity left, with no revocation and no loss
// of the server's data to explain it: the holding ended without its loss
// being reported.
func silentLoss(hd *Holding, dataLost []Event) (Violation, bool) {
	rel := hd.Release
	if rel == nil || rel.Outcome != OutcomeNotHeld {
		return Violation{}, false
	}
	if hd.LostAt != 0 && hd.LostAt <= rel.Sent {
		return Violation{}, false // reported before the release was sent
	}
	if rel.Validity <= 0 || rel.Reply-rel.Sent >= rel.Validity {
		return Violation{}, false // the local deadline passed meanwhile
	}
	if hd.Excused != 0 && hd.Excused <= rel.Reply {
		return Violation{}, false // revoked or suspended
	}
	for _, d := range dataLost {
		if d.At <= rel.Reply && d.Until >= hd.Acquired {
			return Violation{}, false
		}
	}
	return Violation{"silent-loss", hd.Resource, fmt.Sprintf(
		"release of %s (token %d) found the key gone or someone else's %v after it was sent, with %v of validity left and no loss reported",
		hd.Holder, hd.Token, time.Duration(rel.Reply-rel.Sent), time.Duration(rel.Validity))}, true
}

// checkResource checks the holdings of one resource for overlaps and
// growing tokens.
func checkResource(resource string, list []*Holding, excused *int, add func(Violation)) {
	sort.SliceStable(list, func(i, j int) bool {
		return cmp.Or(cmp.Compare(list[i].Acquired, list[j].Acquired), cmp.Compare(list[i].Token, list[j].Token)) < 0
	})
	var open []*Holding // earlier holdings not ended when the current one was acquired
	for i, b := range list {
		if i > 0 && b.Token <= list[i-1].Token {
			a := list[i-1]
			add(Violation{"token", resource, fmt.Sprintf("token %d of %s (acquired %s) is not greater than token %d of %s (acquired %s)",
				b.Token, b.Holder, stamp(b.Acquired), a.Token, a.Holder, stamp(a.Acquired))})
		}
		kept := open[:0]
		for _, a := range open {
			if a.End != 0 && a.End < b.Acquired {
				continue
			}
			kept = append(kept, a)
			if a.Excused != 0 && a.Excused < b.Acquired && b.Token > a.Token {
				*excused++
				continue
			}
			add(Violation{"overlap", resource, fmt.Sprintf("%s (token %d) acquired at %s while %s (token %d, acquired %s) held until %s: overlap of %v",
				b.Holder, b.Token, stamp(b.Acquired), a.Holder, a.Token, stamp(a.Acquired), endStamp(a.End),
				overlap(a, b))})
		}
		open = append(kept, b)
	}
}

func overlap(a, b *Holding) time.Duration {
	if a.End == 0 {
		return time.Duration(-1)
	}
	end := a.End
	if b.End != 0 && b.End < end {
		end = b.End
	}
	return time.Duration(end - b.Acquired)
}

func stamp(ns int64) string {
	return time.Unix(0, ns).Format("15:04:05.000000")
}

func endStamp(ns int64) string {
	if ns == 0 {
		return "never"
	}
	return stamp(ns)
}

func filter(events []Event, kind Kind) []Event {
	var out []Event
	for _, e := range events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Dump returns the holdings of resource as text, one a line, for a failure
// message.
func (r *Result) Dump(resource string) string {
	var b strings.Builder
	for _, hd := range r.Holds {
		if hd.Resource != resource {
			continue
		}
		fmt.Fprintf(&b, "  %s token=%d acquired=%s end=%s (%s) worker=%s\n",
			hd.Holder, hd.Token, stamp(hd.Acquired), endStamp(hd.End), hd.EndKind, hd.Worker)
	}
	return b.String()
}
