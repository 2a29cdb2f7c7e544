// Package history records every holding of a reservation during a fault
// test and checks the recorded history, the way etcd's robustness tests and
// Jepsen do: run traffic, inject faults, then validate what happened.
//
// A holding is one successful acquisition: its resource, holder value and
// fencing token, the instant it was acquired (the reply was received) and
// the instant it ended: the first release was sent, the loss was reported
// on Done, or its process was killed (if it was killed while it released,
// when it began to: see Releasing). All instants are wall-clock
// nanoseconds, so that events from worker processes on the same machine can
// be compared with those of the test process.
//
// Check fails on:
//   - two holdings of one resource whose [acquired, end] intervals
//     intersect, unless the first holder was knowingly taken out of the
//     game (its process suspended, or its key deleted by another client)
//     before the second acquired, the second's token is the greater one,
//     and the first reported its loss by the time the fault can explain:
//     the end of the suspension (plus Limits.Grace), or its next renewal
//     (a heartbeat after the revocation, plus Limits.Grace). That is the
//     stale holder that fencing tokens exist for; one that goes on
//     believing it holds past that bound is a violation. A failover
//     (FailedOver) excuses an overlap the same way, when the test records
//     it: its holder must have reported its loss by its local deadline;
//   - for a semaphore (holdings acquired with a limit of N permits, see
//     Event.Limit): more than N holdings of the resource at once, the
//     stale holders that a fault excuses as above left out (they must have
//     the smaller token); and any holding of another limit, or a plain
//     one, open at the same time (the library refuses a limit other than
//     the one in use), which is an overlap;
//   - a token that is not positive, or not greater than the token of the
//     resource's previous holding; for a semaphore, whose permits share
//     one sequence and whose concurrent acquisitions may return in any
//     order: a token used twice, or not greater than the token of a
//     holding acquired before this one's call;
//   - a holding that never ended, or ended without its release or its
//     loss being reported: a release that found the key gone while the
//     holder still had validity left, with no fault to explain it, or a
//     release that found the key gone and did not record its validity;
//   - a release that succeeded after the holder's key was revoked: it
//     deleted a key that was not its own any more;
//   - an end (release or loss) recorded before the acquisition returned;
//   - a loss whose cause is not reservation.ErrLost;
//   - a Lock call that waited in the server's queue (LockCall) and was
//     overtaken: another Lock call of a queueing Client, begun after the
//     first one's place was taken, acquired the resource first, although
//     the first was still waiting (it acquired later, or gave up only
//     after the other had acquired), unless the first lost its place: its
//     worker was cut off or stopped for longer than Limits.PlaceKept, the
//     server lost its data (and the queue) meanwhile, or the restart guard
//     refused it (Guarded). TryLock calls,
//     Clients with NoQueue and Node workers are outside this promise. A
//     set's Lock call waits in the queue of every member: it is checked
//     in each, against the Lock calls that share that member;
//   - for a set (resources acquired together with reservation.With, whose
//     holdings share one holder value and list the members in Event.Set):
//     each member's holding is checked as a holding of its resource by all
//     the rules above (exclusion, growing tokens, ends), and besides: the
//     set's members not all held from one acquisition (a member with no
//     holding, or with another acquisition instant or call, another worker
//     or another list of members); an end of one member after the first
//     loss reported by another (a set's loss ends all its members); and a
//     holding of a member by another holder while the set still held one
//     of its other members (the set is held from its acquisition until its
//     last member's end), unless a fault excuses it as for an overlap.
//
// It also checks the same history for linearizability against a lock model
// of N permits (1 for a plain reservation) with porcupine (see
// Linearizable); only "ok" passes (see Passed). A set's members are each a
// lock of their own there (see Operations).
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
	// Acquired: Holder got Resource with Token. Call is when the TryLock or
	// Lock call was made, At when its reply came back.
	// Limit is the number of permits when the holding is one of a
	// semaphore's (reservation.Limit), 0 for a plain reservation; Key is
	// the key held (a permit's, for a semaphore). Set, for a member of a
	// set (reservation.With), lists every member of the set, in the order
	// the call named them: each member's holding is recorded by an Acquired
	// event of its own, all with the set's one holder value, Call and At.
	Acquired Kind = "acquired"
	// Released: Holder gave its holding up. At is when the first release
	// was sent (the holder stopped using the resource then). Sent, Reply
	// and Validity describe the last attempt: when it was sent, when its
	// answer came back, and what Validity() said just before it was sent
	// (nil when not recorded). Outcome is "ok", "not-held" (ErrNotHeld) or
	// "error".
	Released Kind = "released"
	// Releasing: Holder stopped using its holding at At and is about to
	// send its first release; its Released event follows once the release
	// is answered. A process killed in between leaves only this one: its
	// release may have reached the server, and another worker acquired, by
	// the kill. Its holding then ended at At, not at the crash.
	Releasing Kind = "releasing"
	// Lost: Holder saw its Done channel closed at At; Outcome is
	// LostCause when Err() matched reservation.ErrLost (errors.Is), else
	// Err()'s text; Reason is Err()'s text, which says why.
	Lost Kind = "lost"
	// Crashed: the process of Worker was killed (kill -9) at At: every
	// holding of Worker still open then ended then.
	Crashed Kind = "crashed"
	// Suspended: the process of Worker was stopped from At to Until
	// (SIGSTOP, SIGCONT): it could notice nothing meanwhile. Its holdings
	// may overlap their successors until Until (plus Limits.Grace), when
	// it wakes and must report their loss.
	Suspended Kind = "suspended"
	// Revoked: another client deleted or overwrote the key of Holder, by
	// a command sent at At whose answer came back at Until. From At on,
	// another worker may acquire before Holder notices, and Holder must
	// report its loss by its next renewal: a heartbeat after Until (plus
	// Limits.Grace).
	Revoked Kind = "revoked"
	// DataLost: the server lost every key between At and Until (a
	// FLUSHALL, a restart without persistence); in quorum mode, a majority
	// of the servers did (a minority losing its data is no loss of a
	// holding, and is not recorded). Unlike Revoked this excuses no
	// overlap: the restart guard must prevent them.
	DataLost Kind = "data-lost"
	// FailedOver: the master that held the key of Holder was killed, its
	// process gone at At, and a replica promoted in its place, answering
	// as master at Until. Replication is asynchronous: the replica may
	// lack the holder's last writes, its key among them, so from At on
	// another worker may acquire on the new master before Holder notices.
	// Holder must report its loss by its local deadline, at the latest
	// At plus Limits.LocalDeadline (plus Limits.Grace): its last
	// successful acquire or renewal was sent before the kill. A test
	// records it only where it accepts that failovers lose writes (no
	// WaitReplicas); without it, the overlap is a violation.
	FailedOver Kind = "failed-over"
	// Lateness is not about a holding: Late holds how late the timers of
	// Worker's process fired (a process starved of CPU), and LateAt when
	// each fired. Check ignores it.
	Lateness Kind = "timer-lateness"
	// LockCall: a Lock call on Resource (on the members in Set, for a
	// set's call) by a Client that queues on the
	// server (not NoQueue), made at Call by Worker's one lane. At is when
	// the Client reported that the call waits (its EventWait was
	// delivered): by then its first attempt was refused and it held a
	// place in the queue. At is 0 when it did not wait. Outcome says how
	// the call ended: OutcomeAcquired (Holder is its holding's value),
	// OutcomeGaveUp (its context ended at Until), OutcomeStopped (its
	// worker was stopping) or OutcomeError.
	LockCall Kind = "lock-call"
	// CutOff: the link of Worker to Redis was cut from At to Until: a
	// place of its in the queue may lapse meanwhile (see
	// Limits.PlaceKept).
	CutOff Kind = "cut-off"
	// Guarded: the restart guard refused every acquisition from At (the
	// server had lost its data) until Until (the guard's end). A Lock call
	// refused by the guard waits without a place in the queue (the
	// acquire script refuses before it looks at the queue), and retries
	// when the guard ends, as every other waiter does: the order of the
	// Lock calls that waited meanwhile is not promised.
	Guarded Kind = "restart-guard"
)

// Event is one entry of a history. Worker processes print events as JSON
// lines, and the test process adds them.
type Event struct {
	Kind     Kind   `json:"kind"`
	Worker   string `json:"worker,omitempty"`
	Resource string `json:"resource,omitempty"`
	Holder   string `json:"holder,omitempty"`
	Token    int64  `json:"token,omitempty"`
	Limit    int    `json:"limit,omitempty"`
	Key      string `json:"key,omitempty"`
	// Set lists the members of a set (see Acquired and LockCall).
	Set   []string `json:"set,omitempty"`
	Call  int64    `json:"call,omitempty"`
	At    int64    `json:"at"`
	Until int64    `json:"until,omitempty"`
	Sent  int64    `json:"sent,omitempty"`
	Reply int64    `json:"reply,omitempty"`
	// Validity is a pointer so that a validity of 0 (the local deadline
	// passed) is told apart from one that was not recorded.
	Validity *time.Duration `json:"validity,omitempty"`
	Outcome  string         `json:"outcome,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	// Late and LateAt: see Lateness.
	Late   []time.Duration `json:"late,omitempty"`
	LateAt []int64         `json:"late_at,omitempty"`
}

// Validity returns d as an Event's Validity.
func Validity(d time.Duration) *time.Duration { return &d }

// Outcomes of a Released event.
const (
	OutcomeOK      = "ok"
	OutcomeNotHeld = "not-held"
	OutcomeError   = "error"
)

// Outcomes of a LockCall event (or OutcomeError).
const (
	OutcomeAcquired = "acquired"
	OutcomeGaveUp   = "gave-up"
	OutcomeStopped  = "stopped"
)

// LostCause is the Outcome a Lost event must have: the text of
// reservation.ErrLost, which the worker records when Err() matches it
// (errors.Is); the error itself wraps it with the reason.
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
func (h *History) Add(events ...Event) {
	h.mu.Lock()
	h.events = append(h.events, events...)
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

// Limits are the scenario's timings that bound what a fault excuses.
type Limits struct {
	// Heartbeat is the renewal interval: a holder whose key was revoked
	// learns of it at its next renewal at the latest, within a heartbeat.
	Heartbeat time.Duration
	// Grace is what the scheduling of a busy machine may add to the
	// instant a holder reports what it knows (waking from a suspension,
	// hearing its renewal's reply).
	Grace time.Duration
	// LocalDeadline is how long after the send of its last successful
	// acquire or renewal a holder reaches its local deadline (the TTL less
	// the drift margin): a holder whose key a failover lost must have
	// reported its loss by then (FailedOver). Zero where no failover is
	// recorded.
	LocalDeadline time.Duration
	// PlaceKept is the longest a waiter can be cut off or stopped and
	// keep its place in the queue for sure: its TTL (the place's lease),
	// less a heartbeat (its last renewal may be that old), a retry
	// interval (its first attempt once it is back may wait that long) and
	// Grace. Zero: any cut or stop may lose the place.
	PlaceKept time.Duration
}

// Holding is one acquisition, as rebuilt from the events.
type Holding struct {
	Worker, Resource, Holder string
	Token                    int64
	// Limit is the semaphore's number of permits (0: a plain
	// reservation), Key the key held.
	Limit int
	Key   string
	// Set lists the members of the set this holding is one member of, nil
	// for a holding of one resource. The holdings of a set's members share
	// its holder value.
	Set []string
	// Call is when the acquiring call was made, Acquired when it
	// answered.
	Call, Acquired int64
	// End is when the holding ended for its holder: first release sent,
	// loss reported, or process killed (or, when it was killed while it
	// released, the Releasing event's At); 0 when it never did. EndKind
	// says which (Released, Lost, Crashed).
	End     int64
	EndKind Kind
	// Releasing is the At of the Releasing event, 0 when none came.
	Releasing int64
	// Excuses are the faults that took the holder out of the game before
	// End (its process suspended, its key revoked, its master failed
	// over): each lets another worker hold the resource from its From
	// until its Until.
	Excuses []Excuse
	// Revoked reports that another client took the holder's key.
	Revoked bool
	// LostAt is when a loss was reported, 0 when none.
	LostAt int64
	// Release is the Released event, if any.
	Release *Event
	// Cause is the Outcome of the Lost event, Reason its Reason.
	Cause, Reason string
}

// Excuse is a fault that took a holder out of the game: from From, another
// worker may acquire its resource before it notices, and the holder must
// have reported its loss by Until (what the fault can explain).
type Excuse struct {
	Kind        Kind // Suspended, Revoked or FailedOver
	From, Until int64
}

// excuse answers the excuse that covers an overlap with a holding acquired
// at acquired, if any: the fault took the holder out of the game before
// then, and the holder reported its loss by the time the fault explains.
func (hd *Holding) excuse(acquired int64) (Excuse, bool) {
	for _, e := range hd.Excuses {
		if e.From < acquired && hd.End != 0 && hd.End <= e.Until {
			return e, true
		}
	}
	return Excuse{}, false
}

// Violation is one failed check.
type Violation struct {
	Check    string `json:"check"` // overlap, holders, token, unended, silent-loss, revoked-release, cause, event, fifo, set, set-loss, set-overlap
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
	Holdings  int `json:"holdings"`
	Resources int `json:"resources"`
	Workers   int `json:"workers"`
	Released  int `json:"released"`
	Lost      int `json:"lost"`
	Crashed   int `json:"crashed"`
	// CrashedReleasing counts the crashed holdings whose process was
	// killed while it released (see Releasing).
	CrashedReleasing int         `json:"crashed_releasing,omitempty"`
	Excused          int         `json:"excused"` // overlaps with a stale, fenced-off holder
	Violations       []Violation `json:"violations,omitempty"`
	// Holds are the holdings, ordered by resource then acquisition.
	Holds []*Holding `json:"-"`
	// Peaks holds, for each semaphore's resource, the most holdings open
	// at once, stale ones left out: its limit when it was full.
	Peaks map[string]int `json:"peaks,omitempty"`
	// Waited counts the Lock calls that waited in the server's queue
	// (LockCall events with a wait), FIFOPairs the pairs of a waiter and
	// a later Lock call that acquired whose order was checked, and
	// FIFOExcused the waiters left out because they lost their place (a
	// cut, a stop, a loss of the server's data).
	Waited      int `json:"waited,omitempty"`
	FIFOPairs   int `json:"fifo_pairs,omitempty"`
	FIFOExcused int `json:"fifo_excused,omitempty"`
	// Sets counts the set acquisitions (each a holding of every member),
	// SetMembers their members' holdings.
	Sets       int `json:"sets,omitempty"`
	SetMembers int `json:"set_members,omitempty"`
}

// OK reports whether no check failed.
func (r *Result) OK() bool { return len(r.Violations) == 0 }

// String summarises r on one line.
func (r *Result) String() string {
	s := fmt.Sprintf("%d holdings of %d resources by %d workers: %d released, %d lost, %d crashed, %d stale overlaps excused by fencing",
		r.Holdings, r.Resources, r.Workers, r.Released, r.Lost, r.Crashed, r.Excused)
	if r.CrashedReleasing > 0 {
		s += fmt.Sprintf("; %d of the crashed were killed while they released (ended when they began to)", r.CrashedReleasing)
	}
	for _, resource := range sortedKeys(r.Peaks) {
		limit := 0
		for _, hd := range r.Holds {
			if hd.Resource == resource {
				limit = max(limit, hd.Limit)
			}
		}
		s += fmt.Sprintf("; semaphore %q: at most %d holders of %d at once", resource, r.Peaks[resource], limit)
	}
	if r.Sets > 0 {
		s += fmt.Sprintf("; %d sets acquired (%d members' holdings among the above)", r.Sets, r.SetMembers)
	}
	if r.Waited > 0 {
		s += fmt.Sprintf("; %d Lock calls waited in the queue: %d pairs checked for order, %d waiters excused (place lost)",
			r.Waited, r.FIFOPairs, r.FIFOExcused)
	}
	if len(r.Violations) > 0 {
		s += fmt.Sprintf("; %d VIOLATIONS", len(r.Violations))
	}
	return s
}

// maxViolations bounds how many violations of one kind are listed.
const maxViolations = 20

// Check rebuilds the holdings from the events and checks them, with the
// excuses of faults bounded by lim.
func (h *History) Check(lim Limits) *Result {
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
	holds, workers := build(events, lim, add)
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
			if hd.End == hd.Releasing {
				res.CrashedReleasing++
			}
		}
		if hd.Token <= 0 {
			add(Violation{"token", hd.Resource, fmt.Sprintf("holding %s (acquired %s) has token %d: a token is always positive (was it recorded?)", hd.Holder, stamp(hd.Acquired), hd.Token)})
		}
		if hd.LostAt != 0 && hd.Cause != LostCause {
			add(Violation{"cause", hd.Resource, fmt.Sprintf("holding %s ended on Done with cause %q (%q), want %q", hd.Holder, hd.Cause, hd.Reason, LostCause)})
		}
		if hd.Revoked && hd.Release != nil && hd.Release.Outcome == OutcomeOK {
			add(Violation{"revoked-release", hd.Resource, fmt.Sprintf("release of %s (token %d) sent at %s succeeded, but its key had been revoked: it deleted a key that was not its own",
				hd.Holder, hd.Token, stamp(hd.Release.Sent))})
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
		if !slices.ContainsFunc(list, func(hd *Holding) bool { return hd.Limit > 0 }) {
			checkResource(resource, list, &res.Excused, add)
			continue
		}
		if res.Peaks == nil {
			res.Peaks = map[string]int{}
		}
		res.Peaks[resource] = checkSemaphore(resource, list, &res.Excused, add)
	}
	checkSets(holds, byRes, res, add)
	checkFIFO(events, holds, lim, res, add)
	return res
}

// build rebuilds the holdings from events.
func build(events []Event, lim Limits, add func(Violation)) ([]*Holding, map[string]bool) {
	// A holder value is one holding's, or those of the members of one
	// set, one per resource.
	byHolder := map[string][]*Holding{}
	var holds []*Holding
	workers := map[string]bool{}
	for _, e := range events {
		if e.Kind != Acquired {
			continue
		}
		if same := byHolder[e.Holder]; len(same) > 0 {
			switch {
			case e.Set == nil || slices.ContainsFunc(same, func(hd *Holding) bool { return hd.Set == nil }):
				add(Violation{"event", e.Resource, fmt.Sprintf("holder value %s acquired twice: holder values must be unique (but for the members of one set)", e.Holder)})
				continue
			case slices.ContainsFunc(same, func(hd *Holding) bool { return hd.Resource == e.Resource }):
				add(Violation{"set", e.Resource, fmt.Sprintf("member %q of the set of %s acquired twice", e.Resource, e.Holder)})
				continue
			}
		}
		hd := &Holding{Worker: e.Worker, Resource: e.Resource, Holder: e.Holder, Token: e.Token, Limit: e.Limit, Key: e.Key,
			Set: e.Set, Call: e.Call, Acquired: e.At}
		if hd.Call == 0 || hd.Call > hd.Acquired {
			hd.Call = hd.Acquired
		}
		byHolder[e.Holder] = append(byHolder[e.Holder], hd)
		holds = append(holds, hd)
		workers[e.Worker] = true
	}
	// holdingsOf answers the holdings an event of holder on resource is
	// about: a set's member's, when resource is one; else every holding of
	// holder (an event that names no resource is about the whole set).
	holdingsOf := func(holder, resource string) []*Holding {
		same := byHolder[holder]
		if i := slices.IndexFunc(same, func(hd *Holding) bool { return hd.Resource == resource }); i >= 0 {
			return same[i : i+1]
		}
		if resource == "" || len(same) == 1 && same[0].Set == nil {
			return same
		}
		return nil
	}
	end := func(hd *Holding, at int64, kind Kind) {
		if hd.End == 0 || at < hd.End {
			hd.End, hd.EndKind = at, kind
		}
	}
	// endEvent records on hd the Releasing, Released, Lost or Revoked
	// event e.
	endEvent := func(hd *Holding, e Event) {
		if e.Kind != Revoked && (e.At < hd.Acquired || e.Kind == Released && e.Sent != 0 && e.Sent < hd.Acquired) {
			add(Violation{"event", hd.Resource, fmt.Sprintf("%s of %s recorded at %s, before its acquire returned at %s",
				e.Kind, hd.Holder, stamp(min(e.At, cmp.Or(e.Sent, e.At))), stamp(hd.Acquired))})
		}
		switch e.Kind {
		case Releasing:
			if hd.Releasing == 0 || e.At < hd.Releasing {
				hd.Releasing = e.At
			}
		case Released:
			hd.Release = &e
			end(hd, e.At, Released)
		case Lost:
			if hd.LostAt == 0 || e.At < hd.LostAt {
				hd.LostAt, hd.Cause, hd.Reason = e.At, e.Outcome, e.Reason
			}
			end(hd, e.At, Lost)
		case Revoked:
			hd.Revoked = true
			// Its next renewal, within a heartbeat of the revocation,
			// finds the key gone (client tracking tells it sooner).
			hd.Excuses = append(hd.Excuses, Excuse{Revoked, e.At, cmp.Or(e.Until, e.At) + int64(lim.Heartbeat+lim.Grace)})
		}
	}
	for _, e := range events {
		switch e.Kind {
		case Releasing, Released, Lost, Revoked:
			hds := holdingsOf(e.Holder, e.Resource)
			if len(hds) == 0 {
				if e.Kind != Revoked { // a revocation may hit a stranger's key
					add(Violation{"event", e.Resource, fmt.Sprintf("%s event for holder %q that never acquired", e.Kind, e.Holder)})
				}
				continue
			}
			for _, hd := range hds {
				endEvent(hd, e)
			}
		case FailedOver:
			for _, hd := range holdingsOf(e.Holder, e.Resource) {
				hd.Excuses = append(hd.Excuses, Excuse{FailedOver, e.At, e.At + int64(lim.LocalDeadline+lim.Grace)})
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
					// On waking, its local deadline long past, it reports
					// its loss at once.
					hd.Excuses = append(hd.Excuses, Excuse{Suspended, e.At, cmp.Or(e.Until, e.At) + int64(lim.Grace)})
				}
			}
		}
	}
	for _, hd := range holds {
		if hd.EndKind == Crashed && hd.Releasing != 0 && hd.Releasing < hd.End {
			// Killed between the send of its release and its Released
			// event: the release may have been answered.
			hd.End = hd.Releasing
		}
		hd.Excuses = slices.DeleteFunc(hd.Excuses, func(x Excuse) bool { return hd.End != 0 && x.From >= hd.End })
	}
	return holds, workers
}

// silentLoss reports a release that found the key gone or someone else's
// while the holder still had validity left, with no revocation, failover
// or loss of the server's data to explain it: the holding ended without its loss
// being reported. A release that found the key gone without recording
// when it was sent, answered and what validity was left cannot be judged,
// and is reported too.
func silentLoss(hd *Holding, dataLost []Event) (Violation, bool) {
	rel := hd.Release
	if rel == nil || rel.Outcome != OutcomeNotHeld {
		return Violation{}, false
	}
	if hd.LostAt != 0 && hd.LostAt <= rel.Sent {
		return Violation{}, false // reported before the release was sent
	}
	if rel.Validity == nil || rel.Sent == 0 || rel.Reply == 0 {
		return Violation{"silent-loss", hd.Resource, fmt.Sprintf(
			"release of %s (token %d) found the key gone or someone else's, with no loss reported, and did not record its validity, send and reply instants: it cannot be told from a silent loss",
			hd.Holder, hd.Token)}, true
	}
	validity := *rel.Validity
	if validity <= 0 || time.Duration(rel.Reply-rel.Sent) >= validity {
		return Violation{}, false // the local deadline passed meanwhile
	}
	for _, x := range hd.Excuses {
		if x.From <= rel.Reply {
			return Violation{}, false // revoked, suspended or failed over
		}
	}
	for _, d := range dataLost {
		if d.At <= rel.Reply && d.Until >= hd.Acquired {
			return Violation{}, false
		}
	}
	return Violation{"silent-loss", hd.Resource, fmt.Sprintf(
		"release of %s (token %d) found the key gone or someone else's %v after it was sent, with %v of validity left and no loss reported",
		hd.Holder, hd.Token, time.Duration(rel.Reply-rel.Sent), validity)}, true
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
			if _, ok := a.excuse(b.Acquired); ok && b.Token > a.Token {
				*excused++
				continue
			}
			detail := fmt.Sprintf("%s (token %d) acquired at %s while %s (token %d, acquired %s) held until %s: overlap of %v",
				b.Holder, b.Token, stamp(b.Acquired), a.Holder, a.Token, stamp(a.Acquired), endStamp(a.End), overlap(a, b))
			for _, x := range a.Excuses {
				if x.From < b.Acquired {
					detail += fmt.Sprintf("; %s at %s, it should have reported its loss by %s", x.Kind, stamp(x.From), stamp(x.Until))
				}
			}
			add(Violation{"overlap", resource, detail})
		}
		open = append(kept, b)
	}
}

// checkSemaphore checks the holdings of a resource reserved with a limit
// (a semaphore's permits) for tokens and for at most N holders at once, and
// answers the most holdings open at once (stale ones left out).
func checkSemaphore(resource string, list []*Holding, excused *int, add func(Violation)) (peak int) {
	sort.SliceStable(list, func(i, j int) bool {
		return cmp.Or(cmp.Compare(list[i].Acquired, list[j].Acquired), cmp.Compare(list[i].Token, list[j].Token)) < 0
	})
	// One sequence of tokens for every permit, issued in the server's
	// order, which lies between each call and its reply: a token is used
	// once, and is greater than that of every holding acquired before the
	// call was made.
	byToken := map[int64]*Holding{}
	for _, b := range list {
		if a := byToken[b.Token]; a != nil && b.Token > 0 {
			add(Violation{"token", resource, fmt.Sprintf("token %d of %s (acquired %s) was issued to %s (acquired %s) too",
				b.Token, b.Holder, stamp(b.Acquired), a.Holder, stamp(a.Acquired))})
		}
		byToken[b.Token] = b
	}
	byCall := slices.Clone(list)
	slices.SortStableFunc(byCall, func(a, b *Holding) int { return cmp.Compare(a.Call, b.Call) })
	var last *Holding // the greatest token among the holdings acquired before the current call
	i := 0
	for _, b := range byCall {
		for ; i < len(list) && list[i].Acquired < b.Call; i++ {
			if last == nil || list[i].Token > last.Token {
				last = list[i]
			}
		}
		if last != nil && b.Token <= last.Token {
			add(Violation{"token", resource, fmt.Sprintf("token %d of %s (called %s) is not greater than token %d of %s, acquired before that at %s",
				b.Token, b.Holder, stamp(b.Call), last.Token, last.Holder, stamp(last.Acquired))})
		}
	}

	var open []*Holding // earlier holdings not ended when the current one was acquired
	for _, b := range list {
		n := max(b.Limit, 1)
		kept := open[:0]
		var held, stale []*Holding
		for _, a := range open {
			if a.End != 0 && a.End < b.Acquired {
				continue
			}
			kept = append(kept, a)
			if _, ok := a.excuse(b.Acquired); ok && b.Token > a.Token {
				stale = append(stale, a)
				continue
			}
			if a.Limit != b.Limit {
				add(Violation{"overlap", resource, fmt.Sprintf("%s (token %d, limit %d) acquired at %s while %s (token %d, limit %d, acquired %s) held until %s: overlap of %v",
					b.Holder, b.Token, b.Limit, stamp(b.Acquired), a.Holder, a.Token, a.Limit, stamp(a.Acquired), endStamp(a.End), overlap(a, b))})
				continue
			}
			held = append(held, a)
		}
		open = append(kept, b)
		if len(held) >= n {
			names := make([]string, len(held))
			for i, a := range held {
				names[i] = fmt.Sprintf("%s (token %d, acquired %s, held until %s)", a.Holder, a.Token, stamp(a.Acquired), endStamp(a.End))
			}
			add(Violation{"holders", resource, fmt.Sprintf("%s (token %d) acquired at %s while %d others held of a limit of %d: %s",
				b.Holder, b.Token, stamp(b.Acquired), len(held), n, strings.Join(names, ", "))})
		}
		// The stale holders beyond the limit are the overlaps that
		// fencing excuses.
		*excused += min(len(stale), max(0, len(held)+len(stale)+1-n))
		peak = max(peak, len(held)+1)
	}
	return peak
}

// checkSets checks what is proper to sets, beyond each member's holding
// (checked with the others of its resource): the holdings of one set
// acquisition begin together and include every member; a loss of one
// member ends them all; and no other holder holds a member while the set
// still holds one of the others.
func checkSets(holds []*Holding, byRes map[string][]*Holding, res *Result, add func(Violation)) {
	sets := map[string][]*Holding{}
	var order []string
	for _, hd := range holds {
		if hd.Set == nil {
			continue
		}
		if sets[hd.Holder] == nil {
			order = append(order, hd.Holder)
		}
		sets[hd.Holder] = append(sets[hd.Holder], hd)
	}
	res.Sets = len(order)
	for _, holder := range order {
		members := sets[holder]
		res.SetMembers += len(members)
		first := members[0]
		// One acquisition: every member held, from the same call and
		// reply, by the same worker, each naming the same members.
		for _, hd := range members[1:] {
			if !slices.Equal(hd.Set, first.Set) || hd.Worker != first.Worker || hd.Call != first.Call || hd.Acquired != first.Acquired {
				add(Violation{"set", hd.Resource, fmt.Sprintf("member %q of the set of %s (members %v, worker %s, called %s, acquired %s) is not of the acquisition of member %q (members %v, worker %s, called %s, acquired %s): a set's members are acquired together",
					hd.Resource, holder, hd.Set, hd.Worker, stamp(hd.Call), stamp(hd.Acquired), first.Resource, first.Set, first.Worker, stamp(first.Call), stamp(first.Acquired))})
			}
		}
		for _, r := range first.Set {
			if !slices.ContainsFunc(members, func(hd *Holding) bool { return hd.Resource == r }) {
				add(Violation{"set", r, fmt.Sprintf("the set of %s (members %v, acquired %s) has no holding of its member %q: a set is acquired all or nothing",
					holder, first.Set, stamp(first.Acquired), r)})
			}
		}
		for _, hd := range members {
			if !slices.Contains(first.Set, hd.Resource) {
				add(Violation{"set", hd.Resource, fmt.Sprintf("%s holds %q as a member of a set of %v, which does not name it", holder, hd.Resource, first.Set)})
			}
		}
		// A set's loss ends every member: none is held past the first
		// loss reported.
		var lossAt int64
		var lostBy *Holding
		for _, hd := range members {
			if hd.LostAt != 0 && (lossAt == 0 || hd.LostAt < lossAt) {
				lossAt, lostBy = hd.LostAt, hd
			}
		}
		if lostBy != nil {
			for _, hd := range members {
				if hd.End == 0 || hd.End > lossAt {
					add(Violation{"set-loss", hd.Resource, fmt.Sprintf("member %q of the set of %s held until %s (%s), after the set's loss reported by member %q at %s: a set's loss ends all its members",
						hd.Resource, holder, endStamp(hd.End), hd.EndKind, lostBy.Resource, stamp(lossAt))})
				}
			}
		}
		// The set is held from its acquisition until its last member's
		// end: a member taken by another holder meanwhile is an overlap,
		// even once that member's own holding ended (which the check of
		// its resource sees).
		var setEnd int64
		for _, hd := range members {
			if hd.End == 0 {
				setEnd = 0
				break
			}
			setEnd = max(setEnd, hd.End)
		}
		for _, m := range members {
			for _, b := range byRes[m.Resource] {
				if b.Holder == holder || b.Acquired < m.Acquired || m.End == 0 || b.Acquired <= m.End {
					continue // earlier, or an overlap with the member's own holding
				}
				if setEnd != 0 && setEnd < b.Acquired {
					continue
				}
				stale := *m
				stale.End = setEnd
				if _, ok := stale.excuse(b.Acquired); ok && b.Token > m.Token {
					res.Excused++
					continue
				}
				add(Violation{"set-overlap", m.Resource, fmt.Sprintf("%s (token %d) acquired %q at %s, while the set of %s (members %v) held until %s: its holding of %q ended at %s, but the set still held another member",
					b.Holder, b.Token, m.Resource, stamp(b.Acquired), holder, first.Set, endStamp(setEnd), m.Resource, stamp(m.End))})
			}
		}
	}
}

// call is a LockCall event and, when it acquired, its holding.
type call struct {
	Event
	hd *Holding
}

// checkFIFO checks that Lock calls were served in the order the queue
// promises: a call that waited (its place taken by At) is not overtaken by
// a Lock call begun after At, unless it lost its place.
func checkFIFO(events []Event, holds []*Holding, lim Limits, res *Result, add func(Violation)) {
	type key struct{ holder, resource string }
	byKey := map[key]*Holding{}
	for _, hd := range holds {
		byKey[key{hd.Holder, hd.Resource}] = hd
	}
	byRes := map[string][]call{}
	var isolated, dataLost []Event
	for _, e := range events {
		switch e.Kind {
		case LockCall:
			// A set's call waits in the queue of each member.
			members := e.Set
			if members == nil {
				members = []string{e.Resource}
			}
			for _, r := range members {
				c := call{Event: e}
				c.Resource = r
				if e.Outcome == OutcomeAcquired {
					if c.hd = byKey[key{e.Holder, r}]; c.hd == nil {
						add(Violation{"event", r, fmt.Sprintf("Lock call of %s begun at %s acquired as %s, which has no holding of this resource",
							e.Worker, stamp(e.Call), e.Holder)})
						continue
					}
				}
				byRes[r] = append(byRes[r], c)
			}
		case Suspended, CutOff:
			if time.Duration(e.Until-e.At) > lim.PlaceKept {
				isolated = append(isolated, e)
			}
		case DataLost, Guarded:
			dataLost = append(dataLost, e)
		}
	}
	for _, resource := range sortedKeys(byRes) {
		calls := byRes[resource]
		for _, a := range calls {
			// a waited, and acquired or gave up by its deadline: its wait
			// ended then.
			var end int64
			switch {
			case a.At == 0:
				continue
			case a.Outcome == OutcomeAcquired:
				end = a.hd.Acquired
			case a.Outcome == OutcomeGaveUp:
				end = a.Until
			default:
				continue // stopped or failed: when it left is not known
			}
			res.Waited++
			if placeLost(a, end, isolated, dataLost) {
				res.FIFOExcused++
				continue
			}
			for _, b := range calls {
				if b.Outcome != OutcomeAcquired || b.Call <= a.At || b.hd == a.hd {
					continue
				}
				res.FIFOPairs++
				switch {
				case a.Outcome == OutcomeAcquired && a.hd.Token > b.hd.Token:
					add(Violation{"fifo", resource, fmt.Sprintf("%s (token %d) acquired before %s (token %d), which waited in the queue since %s, before %s began to wait at %s",
						b.hd.Holder, b.hd.Token, a.hd.Holder, a.hd.Token, stamp(a.At), b.Worker, stamp(b.Call))})
				case a.Outcome == OutcomeGaveUp && b.hd.Acquired < a.Until:
					add(Violation{"fifo", resource, fmt.Sprintf("%s (token %d) acquired at %s, while a Lock call of %s waited in the queue since %s (until it gave up at %s), before %s began to wait at %s",
						b.hd.Holder, b.hd.Token, stamp(b.hd.Acquired), a.Worker, stamp(a.At), stamp(a.Until), b.Worker, stamp(b.Call))})
				}
			}
		}
	}
}

// placeLost reports whether the waiter a, whose wait ended at end, may
// have lost its place in the queue, or never had one: its worker was cut
// off or stopped for longer than its place is kept for sure (isolated), or
// the server lost its data, or its restart guard refused acquisitions
// (dataLost), while it waited.
func placeLost(a call, end int64, isolated, dataLost []Event) bool {
	for _, e := range isolated {
		if e.Worker == a.Worker && e.At < end && cmp.Or(e.Until, e.At) > a.Call {
			return true
		}
	}
	for _, e := range dataLost {
		if e.At < end && cmp.Or(e.Until, e.At) > a.Call {
			return true
		}
	}
	return false
}

// overlapEnd is when the overlap of a with b, which acquired while a held,
// ended: 0 when neither ended.
func overlapEnd(a, b *Holding) int64 {
	switch {
	case a.End == 0:
		return b.End
	case b.End == 0:
		return a.End
	}
	return min(a.End, b.End)
}

func overlap(a, b *Holding) time.Duration {
	if a.End == 0 {
		return time.Duration(-1)
	}
	return time.Duration(overlapEnd(a, b) - b.Acquired)
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
		fmt.Fprintf(&b, "  %s token=%d acquired=%s end=%s (%s) worker=%s",
			hd.Holder, hd.Token, stamp(hd.Acquired), endStamp(hd.End), hd.EndKind, hd.Worker)
		if hd.Limit > 0 {
			fmt.Fprintf(&b, " limit=%d key=%s", hd.Limit, hd.Key)
		}
		if hd.Set != nil {
			fmt.Fprintf(&b, " set=%s", strings.Join(hd.Set, ","))
		}
		for _, x := range hd.Excuses {
			fmt.Fprintf(&b, " %s=%s..%s", x.Kind, stamp(x.From), stamp(x.Until))
		}
		b.WriteString("\n")
	}
	return b.String()
}
