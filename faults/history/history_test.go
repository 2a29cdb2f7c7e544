package history

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// lim are the limits of the hand-built histories: a heartbeat of 200 ms and
// 60 ms of grace, as in the fault scenarios, and the local deadline of the
// failover scenarios (a TTL of 5 s less its drift margin of 200 ms); a
// waiter keeps its place through a cut or stop of 240 ms (a TTL of 600 ms
// less a heartbeat, a retry interval of 100 ms and the grace).
var lim = Limits{Heartbeat: 200 * time.Millisecond, Grace: 60 * time.Millisecond, LocalDeadline: 4800 * time.Millisecond,
	PlaceKept: 240 * time.Millisecond}

// ms is an instant in milliseconds from an arbitrary origin.
func ms(n int64) int64 { return 1_700_000_000_000_000_000 + n*int64(time.Millisecond) }

func acquired(worker, resource, holder string, token, at int64) Event {
	return Event{Kind: Acquired, Worker: worker, Resource: resource, Holder: holder, Token: token, Call: at - int64(time.Millisecond), At: at}
}

func released(holder string, at int64) Event {
	return Event{Kind: Released, Holder: holder, At: at, Sent: at, Reply: at + int64(time.Millisecond), Validity: Validity(100 * time.Millisecond), Outcome: OutcomeOK}
}

func lost(holder string, at int64) Event {
	return Event{Kind: Lost, Holder: holder, At: at, Outcome: LostCause}
}

func revoked(holder string, at int64) Event {
	return Event{Kind: Revoked, Resource: "r", Holder: holder, At: at, Until: at + int64(time.Millisecond)}
}

// failedOver records that the master of holder's key was killed at at and
// its replica answered as master 2.5 s later.
func failedOver(holder string, at int64) Event {
	return Event{Kind: FailedOver, Resource: "r", Holder: holder, At: at, Until: at + int64(2500*time.Millisecond)}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []Event
		want   []string // checks that must fail, in order; none for a clean history
		// excused is how many overlaps must be excused.
		excused int
		// killedReleasing is how many holdings must have ended when
		// their killed holder began to release.
		killedReleasing int
		// illegal: porcupine must find the history not linearizable.
		illegal bool
	}{
		{name: "clean handover", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)), released("a-1", ms(100)),
			acquired("b", "r", "b-1", 11, ms(101)), lost("b-1", ms(300)),
			acquired("a", "r", "a-2", 12, ms(301)), released("a-2", ms(400)),
			acquired("a", "other", "a-3", 1, ms(50)), released("a-3", ms(500)),
		}},
		{name: "overlap", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)), released("a-1", ms(150)),
			acquired("b", "r", "b-1", 11, ms(100)), released("b-1", ms(200)),
		}, want: []string{"overlap"}, illegal: true},
		{name: "overlap with a holding that never ended", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			acquired("b", "r", "b-1", 11, ms(100)), released("b-1", ms(200)),
		}, want: []string{"unended", "overlap"}, illegal: true},
		{name: "token not growing", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)), released("a-1", ms(100)),
			acquired("b", "r", "b-1", 10, ms(101)), released("b-1", ms(200)),
		}, want: []string{"token"}, illegal: true},
		{name: "token zero", events: []Event{
			acquired("a", "r", "a-1", 0, ms(0)), released("a-1", ms(100)),
		}, want: []string{"token"}, illegal: true},
		{name: "tokens all zero", events: []Event{
			acquired("a", "r", "a-1", 0, ms(0)), released("a-1", ms(100)),
			acquired("b", "other", "b-1", 0, ms(0)), released("b-1", ms(100)),
		}, want: []string{"token", "token"}, illegal: true},
		{name: "loss with the wrong cause", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Lost, Holder: "a-1", At: ms(50), Outcome: "reservation: released"},
		}, want: []string{"cause"}},
		{name: "release sent before its acquire returned", events: []Event{
			acquired("a", "r", "a-1", 10, ms(100)),
			released("a-1", ms(50)),
		}, want: []string{"event"}, illegal: true},
		{name: "release attempt sent before its acquire returned", events: []Event{
			acquired("a", "r", "a-1", 10, ms(100)),
			{Kind: Released, Holder: "a-1", At: ms(120), Sent: ms(90), Reply: ms(121), Validity: Validity(time.Second), Outcome: OutcomeOK},
		}, want: []string{"event"}},
		{name: "loss recorded before its acquire returned", events: []Event{
			acquired("a", "r", "a-1", 10, ms(100)),
			lost("a-1", ms(90)),
		}, want: []string{"event"}, illegal: true},
		{name: "release found the key gone with validity left", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Released, Holder: "a-1", At: ms(100), Sent: ms(100), Reply: ms(101), Validity: Validity(200 * time.Millisecond), Outcome: OutcomeNotHeld},
		}, want: []string{"silent-loss"}},
		{name: "release found the key gone, validity not recorded", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Released, Holder: "a-1", At: ms(100), Sent: ms(100), Reply: ms(101), Outcome: OutcomeNotHeld},
		}, want: []string{"silent-loss"}},
		{name: "release found the key gone, instants not recorded", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Released, Holder: "a-1", At: ms(100), Validity: Validity(0), Outcome: OutcomeNotHeld},
		}, want: []string{"silent-loss"}},
		{name: "release found the key gone after the local deadline", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Released, Holder: "a-1", At: ms(100), Sent: ms(100), Reply: ms(120), Validity: Validity(10 * time.Millisecond), Outcome: OutcomeNotHeld},
		}},
		{name: "release found the key gone, validity zero", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Released, Holder: "a-1", At: ms(100), Sent: ms(100), Reply: ms(101), Validity: Validity(0), Outcome: OutcomeNotHeld},
		}},
		{name: "release found the key gone after a FLUSHALL", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: DataLost, At: ms(50), Until: ms(51)},
			{Kind: Released, Holder: "a-1", At: ms(100), Sent: ms(100), Reply: ms(101), Validity: Validity(200 * time.Millisecond), Outcome: OutcomeNotHeld},
		}},
		{name: "a FLUSHALL excuses no overlap", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: DataLost, At: ms(50), Until: ms(51)},
			acquired("b", "r", "b-1", 11, ms(60)), released("b-1", ms(200)),
			lost("a-1", ms(70)),
		}, want: []string{"overlap"}, illegal: true},
		{name: "crashed holder", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Crashed, Worker: "a", At: ms(50)},
			acquired("b", "r", "b-1", 11, ms(600)), released("b-1", ms(700)),
		}},
		{name: "holder killed while it released", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Releasing, Worker: "a", Resource: "r", Holder: "a-1", At: ms(100)},
			acquired("b", "r", "b-1", 11, ms(101)), released("b-1", ms(200)),
			{Kind: Crashed, Worker: "a", At: ms(105)},
		}, killedReleasing: 1},
		{name: "holder killed before it released", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			acquired("b", "r", "b-1", 11, ms(101)), released("b-1", ms(200)),
			{Kind: Crashed, Worker: "a", At: ms(105)},
		}, want: []string{"overlap"}, illegal: true},
		{name: "acquired before the killed holder began to release", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			acquired("b", "r", "b-1", 11, ms(90)), released("b-1", ms(200)),
			{Kind: Releasing, Worker: "a", Resource: "r", Holder: "a-1", At: ms(100)},
			{Kind: Crashed, Worker: "a", At: ms(105)},
		}, want: []string{"overlap"}, killedReleasing: 1, illegal: true},
		{name: "release begun before its acquire returned", events: []Event{
			acquired("a", "r", "a-1", 10, ms(100)),
			{Kind: Releasing, Worker: "a", Resource: "r", Holder: "a-1", At: ms(90)},
			released("a-1", ms(120)),
		}, want: []string{"event"}},
		{name: "release begun by a holder that never acquired", events: []Event{
			{Kind: Releasing, Worker: "a", Resource: "r", Holder: "a-1", At: ms(90)},
		}, want: []string{"event"}},
		{name: "suspended holder fenced off", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Suspended, Worker: "a", At: ms(50), Until: ms(1000)},
			acquired("b", "r", "b-1", 11, ms(600)), released("b-1", ms(700)),
			lost("a-1", ms(1001)),
		}, excused: 1},
		{name: "suspended holder reports its loss after the suspension ended", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Suspended, Worker: "a", At: ms(50), Until: ms(1000)},
			acquired("b", "r", "b-1", 11, ms(600)), released("b-1", ms(700)),
			// 1000 + 60 ms of grace: it should have told by 1060.
			lost("a-1", ms(1100)),
		}, want: []string{"overlap"}, illegal: true},
		{name: "suspended holder not fenced off", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Suspended, Worker: "a", At: ms(50), Until: ms(1000)},
			acquired("b", "r", "b-1", 9, ms(600)), released("b-1", ms(700)),
			lost("a-1", ms(1001)),
		}, want: []string{"token", "overlap"}, illegal: true},
		{name: "suspension after the takeover excuses nothing", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			acquired("b", "r", "b-1", 11, ms(40)), released("b-1", ms(45)),
			{Kind: Suspended, Worker: "a", At: ms(50), Until: ms(1000)},
			lost("a-1", ms(1001)),
		}, want: []string{"overlap"}, illegal: true},
		{name: "revoked key", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			revoked("a-1", ms(50)),
			acquired("b", "r", "b-1", 11, ms(52)), released("b-1", ms(60)),
			lost("a-1", ms(150)),
		}, excused: 1},
		{name: "revoked holder reports its loss later than its next renewal", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			revoked("a-1", ms(50)),
			acquired("b", "r", "b-1", 11, ms(52)), released("b-1", ms(60)),
			// Revoked at 50-51: its next renewal, within a heartbeat
			// (200 ms) plus 60 ms of grace, should have told it by 311.
			lost("a-1", ms(400)),
		}, want: []string{"overlap"}, illegal: true},
		{name: "revoked holder never reports its loss", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			revoked("a-1", ms(50)),
			acquired("b", "r", "b-1", 11, ms(52)), released("b-1", ms(60)),
		}, want: []string{"unended", "overlap"}, illegal: true},
		{name: "revoked holder's release succeeds", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			revoked("a-1", ms(50)),
			released("a-1", ms(100)),
		}, want: []string{"revoked-release"}},
		{name: "revoked holder's release finds the key gone", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			revoked("a-1", ms(50)),
			{Kind: Released, Holder: "a-1", At: ms(100), Sent: ms(100), Reply: ms(101), Validity: Validity(200 * time.Millisecond), Outcome: OutcomeNotHeld},
		}},
		{name: "failover lost the holder's key", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			failedOver("a-1", ms(50)),
			acquired("b", "r", "b-1", 11, ms(2600)), released("b-1", ms(2700)),
			lost("a-1", ms(2650)),
		}, excused: 1},
		{name: "failover: holder reports its loss after its local deadline", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			failedOver("a-1", ms(50)),
			acquired("b", "r", "b-1", 11, ms(2600)), released("b-1", ms(2700)),
			// Killed at 50: its local deadline is at most 4800 ms later,
			// plus 60 ms of grace: it should have told by 4910.
			lost("a-1", ms(4950)),
		}, want: []string{"overlap"}, illegal: true},
		{name: "failover: successor's token not greater", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			failedOver("a-1", ms(50)),
			acquired("b", "r", "b-1", 9, ms(2600)), released("b-1", ms(2700)),
			lost("a-1", ms(2650)),
		}, want: []string{"token", "overlap"}, illegal: true},
		{name: "failover not recorded: the overlap is a violation", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			acquired("b", "r", "b-1", 11, ms(2600)), released("b-1", ms(2700)),
			lost("a-1", ms(2650)),
		}, want: []string{"overlap"}, illegal: true},
		{name: "failover: release finds the key gone", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			failedOver("a-1", ms(50)),
			{Kind: Released, Holder: "a-1", At: ms(2600), Sent: ms(2600), Reply: ms(2601), Validity: Validity(2 * time.Second), Outcome: OutcomeNotHeld},
		}},
		{name: "events of a stranger", events: []Event{
			lost("x-1", ms(10)),
		}, want: []string{"event"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New()
			for _, e := range tc.events {
				h.Add(e)
			}
			res := h.Check(lim)
			var got []string
			for _, v := range res.Violations {
				got = append(got, v.Check)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("violations = %v, want %v\n%v", got, tc.want, res.Violations)
			}
			if res.OK() != (len(tc.want) == 0) {
				t.Errorf("OK() = %v with violations %v", res.OK(), got)
			}
			if res.Excused != tc.excused {
				t.Errorf("excused = %d, want %d", res.Excused, tc.excused)
			}
			if res.CrashedReleasing != tc.killedReleasing {
				t.Errorf("crashed while releasing = %d, want %d", res.CrashedReleasing, tc.killedReleasing)
			}
			lin := res.Linearizable(5*time.Second, "", "")
			if tc.illegal != (lin == "illegal") || Passed(lin) == tc.illegal {
				t.Errorf("Linearizable = %s (passed %v), want illegal %v", lin, Passed(lin), tc.illegal)
			}
		})
	}
}

// permit records the acquisition of one of the limit permits of resource,
// at at (called a millisecond before).
func permit(worker, resource, holder string, token, at int64, limit int) Event {
	e := acquired(worker, resource, holder, token, at)
	e.Limit, e.Key = limit, "{reservation-"+resource+"}:permit-"+holder
	return e
}

// TestCheckSemaphore checks the rules of a semaphore's holdings: at most N
// holders at once, stale ones excused as for a reservation, no holder of
// another limit meanwhile, and one sequence of tokens, whose concurrent
// acquisitions may return in either order.
func TestCheckSemaphore(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []Event
		want   []string // checks that must fail, in order; none for a clean history
		// excused is how many overlaps must be excused; peak the most
		// holders of "s" at once.
		excused, peak int
		// illegal: porcupine must find the history not linearizable.
		illegal bool
	}{
		{name: "three holders of three", events: []Event{
			permit("a", "s", "a-1", 10, ms(0), 3), permit("b", "s", "b-1", 11, ms(10), 3), permit("c", "s", "c-1", 12, ms(20), 3),
			released("a-1", ms(100)), released("b-1", ms(110)), released("c-1", ms(120)),
			permit("d", "s", "d-1", 13, ms(101), 3), released("d-1", ms(200)),
		}, peak: 3},
		{name: "four holders of three", events: []Event{
			permit("a", "s", "a-1", 10, ms(0), 3), permit("b", "s", "b-1", 11, ms(10), 3), permit("c", "s", "c-1", 12, ms(20), 3),
			permit("d", "s", "d-1", 13, ms(30), 3),
			released("a-1", ms(100)), released("b-1", ms(110)), released("c-1", ms(120)), released("d-1", ms(130)),
		}, want: []string{"holders"}, peak: 4, illegal: true},
		{name: "two holders of one", events: []Event{
			permit("a", "s", "a-1", 10, ms(0), 1), permit("b", "s", "b-1", 11, ms(10), 1),
			released("a-1", ms(100)), released("b-1", ms(110)),
		}, want: []string{"holders"}, peak: 2, illegal: true},
		{name: "a fourth acquires as a holder releases", events: []Event{
			permit("a", "s", "a-1", 10, ms(0), 3), permit("b", "s", "b-1", 11, ms(10), 3), permit("c", "s", "c-1", 12, ms(20), 3),
			released("a-1", ms(50)), permit("d", "s", "d-1", 13, ms(51), 3),
			released("b-1", ms(100)), released("c-1", ms(110)), released("d-1", ms(130)),
		}, peak: 3},
		{name: "replies in another order than the tokens", events: []Event{
			{Kind: Acquired, Worker: "a", Resource: "s", Holder: "a-1", Token: 12, Limit: 2, Call: ms(0), At: ms(10)},
			{Kind: Acquired, Worker: "b", Resource: "s", Holder: "b-1", Token: 11, Limit: 2, Call: ms(1), At: ms(5)},
			released("a-1", ms(100)), released("b-1", ms(110)),
		}, peak: 2},
		{name: "token not greater than one acquired before the call", events: []Event{
			permit("a", "s", "a-1", 12, ms(0), 2), permit("b", "s", "b-1", 11, ms(10), 2),
			released("a-1", ms(100)), released("b-1", ms(110)),
		}, want: []string{"token"}, peak: 2, illegal: true},
		{name: "a token issued twice", events: []Event{
			{Kind: Acquired, Worker: "a", Resource: "s", Holder: "a-1", Token: 11, Limit: 2, Call: ms(0), At: ms(10)},
			{Kind: Acquired, Worker: "b", Resource: "s", Holder: "b-1", Token: 11, Limit: 2, Call: ms(1), At: ms(5)},
			released("a-1", ms(100)), released("b-1", ms(110)),
		}, want: []string{"token"}, peak: 2, illegal: true},
		{name: "a crashed holder's permit taken", events: []Event{
			permit("a", "s", "a-1", 10, ms(0), 2), permit("b", "s", "b-1", 11, ms(10), 2),
			{Kind: Crashed, Worker: "a", At: ms(50)},
			permit("c", "s", "c-1", 12, ms(600), 2), released("b-1", ms(700)), released("c-1", ms(800)),
		}, peak: 2},
		{name: "a stale holder fenced off", events: []Event{
			permit("a", "s", "a-1", 10, ms(0), 2), permit("b", "s", "b-1", 11, ms(10), 2),
			{Kind: Suspended, Worker: "a", At: ms(50), Until: ms(1000)},
			permit("c", "s", "c-1", 12, ms(600), 2), released("b-1", ms(700)), released("c-1", ms(800)),
			lost("a-1", ms(1001)),
		}, excused: 1, peak: 2},
		{name: "a stale holder within the limit needs no excuse", events: []Event{
			permit("a", "s", "a-1", 10, ms(0), 3), permit("b", "s", "b-1", 11, ms(10), 3),
			{Kind: Suspended, Worker: "a", At: ms(50), Until: ms(1000)},
			permit("c", "s", "c-1", 12, ms(600), 3), released("b-1", ms(700)), released("c-1", ms(800)),
			lost("a-1", ms(1001)),
		}, peak: 2},
		{name: "a stale holder reports its loss too late", events: []Event{
			permit("a", "s", "a-1", 10, ms(0), 2), permit("b", "s", "b-1", 11, ms(10), 2),
			{Kind: Suspended, Worker: "a", At: ms(50), Until: ms(1000)},
			permit("c", "s", "c-1", 12, ms(600), 2), released("b-1", ms(700)), released("c-1", ms(800)),
			lost("a-1", ms(1100)),
		}, want: []string{"holders"}, peak: 3, illegal: true},
		{name: "a FLUSHALL excuses no extra holder", events: []Event{
			permit("a", "s", "a-1", 10, ms(0), 2), permit("b", "s", "b-1", 11, ms(10), 2),
			{Kind: DataLost, At: ms(50), Until: ms(51)},
			permit("c", "s", "c-1", 12, ms(60), 2), permit("d", "s", "d-1", 13, ms(61), 2),
			lost("a-1", ms(70)), lost("b-1", ms(70)), released("c-1", ms(200)), released("d-1", ms(200)),
		}, want: []string{"holders", "holders"}, peak: 4, illegal: true},
		{name: "a plain reservation while permits are held", events: []Event{
			permit("a", "s", "a-1", 10, ms(0), 3),
			acquired("b", "s", "b-1", 11, ms(10)),
			released("a-1", ms(100)), released("b-1", ms(110)),
		}, want: []string{"overlap"}, peak: 1, illegal: true},
		{name: "permits of two limits", events: []Event{
			permit("a", "s", "a-1", 10, ms(0), 3), permit("b", "s", "b-1", 11, ms(10), 2),
			released("a-1", ms(100)), released("b-1", ms(110)),
		}, want: []string{"overlap"}, peak: 1, illegal: true},
		{name: "a plain reservation after the permits", events: []Event{
			permit("a", "s", "a-1", 10, ms(0), 3), released("a-1", ms(100)),
			acquired("b", "s", "b-1", 11, ms(800)), released("b-1", ms(900)),
			permit("c", "s", "c-1", 12, ms(1000), 2), released("c-1", ms(1100)),
		}, peak: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New()
			for _, e := range tc.events {
				h.Add(e)
			}
			res := h.Check(lim)
			var got []string
			for _, v := range res.Violations {
				got = append(got, v.Check)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("violations = %v, want %v\n%v", got, tc.want, res.Violations)
			}
			if res.Excused != tc.excused {
				t.Errorf("excused = %d, want %d", res.Excused, tc.excused)
			}
			if res.Peaks["s"] != tc.peak {
				t.Errorf("peak = %d, want %d", res.Peaks["s"], tc.peak)
			}
			lin := res.Linearizable(5*time.Second, "", "")
			if tc.illegal != (lin == "illegal") || Passed(lin) == tc.illegal {
				t.Errorf("Linearizable = %s (passed %v), want illegal %v", lin, Passed(lin), tc.illegal)
			}
		})
	}
}

// TestLinearizableUnknownFails checks that porcupine running out of time
// is not a pass: 40 holdings of one resource whose every operation is
// concurrent with every other, two of them with the same token, make a
// search of 2^40 states that cannot end in time.
func TestLinearizableUnknownFails(t *testing.T) {
	res := &Result{}
	const n = 40
	for i := range n {
		token := int64(i + 1)
		if i == n-1 {
			token = 1
		}
		res.Holds = append(res.Holds, &Holding{
			Worker: "w", Resource: "r", Holder: "h" + string(rune('A'+i)), Token: token,
			Call: ms(0), Acquired: ms(1000), End: ms(1000), EndKind: Lost,
			Excuses: []Excuse{{Kind: Revoked, From: ms(1), Until: ms(2000)}},
		})
	}
	start := time.Now()
	lin := res.Linearizable(100*time.Millisecond, "", "")
	if !strings.HasPrefix(lin, "unknown") {
		t.Fatalf("Linearizable = %q after %v, want unknown (the search cannot finish)", lin, time.Since(start))
	}
	if Passed(lin) {
		t.Errorf("Passed(%q) = true: porcupine's unknown must fail", lin)
	}
	for _, v := range []string{"illegal", "illegal (see x.html)"} {
		if Passed(v) {
			t.Errorf("Passed(%q) = true", v)
		}
	}
	if !Passed("ok") {
		t.Error(`Passed("ok") = false`)
	}
}

func TestAddJSON(t *testing.T) {
	h := New()
	if err := h.AddJSON([]byte(`{"kind":"acquired","worker":"w","resource":"r","holder":"w-1","token":5,"at":10}`)); err != nil {
		t.Fatal(err)
	}
	if err := h.AddJSON([]byte(`{"kind":"released","holder":"w-1","at":20,"validity":0}`)); err != nil {
		t.Fatal(err)
	}
	if err := h.AddJSON([]byte(`{"kind":"released","holder":"w-1","at":20}`)); err != nil {
		t.Fatal(err)
	}
	if err := h.AddJSON([]byte(`not json`)); err == nil {
		t.Error("AddJSON(not json): no error")
	}
	got := h.Events()
	if len(got) != 3 || got[0].Holder != "w-1" || got[0].Token != 5 || got[0].Kind != Acquired {
		t.Fatalf("events = %+v", got)
	}
	if got[1].Validity == nil || *got[1].Validity != 0 {
		t.Errorf("a validity of 0 read as %v, want recorded as 0", got[1].Validity)
	}
	if got[2].Validity != nil {
		t.Errorf("a validity not recorded read as %v, want nil", *got[2].Validity)
	}
}

// lockCall records a Lock call of worker on r begun at call: waited at
// wait (0: it did not wait), and ended with outcome; holder is its holding
// when it acquired, until when its context ended when it gave up.
func lockCall(worker, r string, call, wait int64, outcome, holder string, until int64) Event {
	return Event{Kind: LockCall, Worker: worker, Resource: r, Call: call, At: wait, Outcome: outcome, Holder: holder, Until: until}
}

func TestCheckFIFO(t *testing.T) {
	// h holds r from 0 to 100; a begins to wait at 10 (its place reported
	// at 12), b at 20 (reported at 22).
	held := []Event{acquired("h", "r", "h-1", 10, ms(0)), released("h-1", ms(100))}
	inOrder := []Event{
		lockCall("a", "r", ms(10), ms(12), OutcomeAcquired, "a-1", 0),
		acquired("a", "r", "a-1", 11, ms(101)), released("a-1", ms(150)),
		lockCall("b", "r", ms(20), ms(22), OutcomeAcquired, "b-1", 0),
		acquired("b", "r", "b-1", 12, ms(151)), released("b-1", ms(200)),
	}
	overtaken := []Event{
		lockCall("a", "r", ms(10), ms(12), OutcomeAcquired, "a-1", 0),
		acquired("a", "r", "a-1", 12, ms(151)), released("a-1", ms(200)),
		lockCall("b", "r", ms(20), ms(22), OutcomeAcquired, "b-1", 0),
		acquired("b", "r", "b-1", 11, ms(101)), released("b-1", ms(150)),
	}
	// gaveUp: a waited until until, and b acquired at 101.
	gaveUp := func(until int64) []Event {
		return []Event{
			lockCall("a", "r", ms(10), ms(12), OutcomeGaveUp, "", until),
			lockCall("b", "r", ms(20), ms(22), OutcomeAcquired, "b-1", 0),
			acquired("b", "r", "b-1", 11, ms(101)), released("b-1", ms(150)),
		}
	}
	with := func(lists ...[]Event) []Event {
		var out []Event
		for _, l := range lists {
			out = append(out, l...)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		events []Event
		want   []string
		// pairs and excused: FIFOPairs and FIFOExcused.
		pairs, excused int
	}{
		{name: "waiters served in order", events: with(held, inOrder), pairs: 1},
		{name: "a waiter overtaken", events: with(held, overtaken), want: []string{"fifo"}, pairs: 1},
		{name: "a waiter that gave up after it was overtaken", events: with(held, gaveUp(ms(120))), want: []string{"fifo"}, pairs: 1},
		{name: "a waiter that gave up before the other acquired", events: with(held, gaveUp(ms(90))), pairs: 1},
		{name: "the other began before the wait was reported", events: with(held, []Event{
			lockCall("a", "r", ms(10), ms(25), OutcomeAcquired, "a-1", 0),
			acquired("a", "r", "a-1", 12, ms(151)), released("a-1", ms(200)),
			lockCall("b", "r", ms(20), ms(22), OutcomeAcquired, "b-1", 0),
			acquired("b", "r", "b-1", 11, ms(101)), released("b-1", ms(150)),
		})},
		{name: "a call whose wait was not reported", events: with(held, []Event{
			lockCall("a", "r", ms(10), 0, OutcomeAcquired, "a-1", 0),
			acquired("a", "r", "a-1", 12, ms(151)), released("a-1", ms(200)),
			lockCall("b", "r", ms(20), ms(22), OutcomeAcquired, "b-1", 0),
			acquired("b", "r", "b-1", 11, ms(101)), released("b-1", ms(150)),
		})},
		{name: "a TryLock goes first", events: with(held, []Event{
			lockCall("a", "r", ms(10), ms(12), OutcomeAcquired, "a-1", 0),
			acquired("a", "r", "a-1", 12, ms(151)), released("a-1", ms(200)),
			acquired("b", "r", "b-1", 11, ms(101)), released("b-1", ms(150)),
		})},
		{name: "a waiter whose worker was stopping", events: with(held, []Event{
			lockCall("a", "r", ms(10), ms(12), OutcomeStopped, "", 0),
			lockCall("b", "r", ms(20), ms(22), OutcomeAcquired, "b-1", 0),
			acquired("b", "r", "b-1", 11, ms(101)), released("b-1", ms(150)),
		})},
		{name: "a waiter cut off past the place's lease", events: with(held, overtaken, []Event{
			{Kind: CutOff, Worker: "a", At: ms(30), Until: ms(400)},
		}), excused: 1},
		{name: "a waiter cut off briefly keeps its place", events: with(held, overtaken, []Event{
			{Kind: CutOff, Worker: "a", At: ms(30), Until: ms(130)},
		}), want: []string{"fifo"}, pairs: 1},
		{name: "a cut of another worker excuses nothing", events: with(held, overtaken, []Event{
			{Kind: CutOff, Worker: "b", At: ms(30), Until: ms(400)},
		}), want: []string{"fifo"}, pairs: 1, excused: 1},
		{name: "a cut after the wait excuses nothing", events: with(held, overtaken, []Event{
			{Kind: CutOff, Worker: "a", At: ms(160), Until: ms(900)},
		}), want: []string{"fifo"}, pairs: 1},
		{name: "a waiter stopped past the place's lease", events: with(held, overtaken, []Event{
			{Kind: Suspended, Worker: "a", At: ms(30), Until: ms(400)},
		}), excused: 1},
		{name: "the queue lost with the server's data", events: with(held, overtaken, []Event{
			{Kind: DataLost, At: ms(50), Until: ms(51)},
			// The holder was told of its loss at once.
			lost("h-1", ms(52)),
		}), excused: 2},
		{name: "waiters refused by the restart guard", events: with(held, overtaken, []Event{
			{Kind: Guarded, At: ms(5), Until: ms(40)},
		}), excused: 2},
		{name: "a restart guard over before the wait excuses nothing", events: with(held, overtaken, []Event{
			{Kind: Guarded, At: ms(1), Until: ms(5)},
		}), want: []string{"fifo"}, pairs: 1},
		{name: "a Lock call acquired as a stranger", events: with(held, []Event{
			lockCall("a", "r", ms(10), ms(12), OutcomeAcquired, "x-1", 0),
		}), want: []string{"event"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New()
			for _, e := range tc.events {
				h.Add(e)
			}
			res := h.Check(lim)
			var got []string
			for _, v := range res.Violations {
				got = append(got, v.Check)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("violations = %v, want %v\n%v", got, tc.want, res.Violations)
			}
			if res.FIFOPairs != tc.pairs || res.FIFOExcused != tc.excused {
				t.Errorf("pairs checked %d, waiters excused %d; want %d and %d", res.FIFOPairs, res.FIFOExcused, tc.pairs, tc.excused)
			}
		})
	}
}

// member records the acquisition of resource as a member of the set of
// holder (every member of set, resource among them) at at, called a
// millisecond before.
func member(worker, resource, holder string, token, at int64, set ...string) Event {
	e := acquired(worker, resource, holder, token, at)
	e.Set = set
	return e
}

// ofMember makes e, a Released or Lost event, about the member resource of
// a set.
func ofMember(e Event, resource string) Event {
	e.Resource = resource
	return e
}

// TestCheckSets checks the rules of sets: each member's holding is checked
// with its resource's, and a set's members are held from one acquisition,
// all of them, end together when one is lost, and are not held by another
// while the set holds any of them.
func TestCheckSets(t *testing.T) {
	// a holds x and y from 0 to 100, then c holds y and x from 150 to 300.
	clean := []Event{
		member("a", "x", "a-1", 10, ms(0), "x", "y"), member("a", "y", "a-1", 20, ms(0), "x", "y"),
		ofMember(released("a-1", ms(100)), "x"), ofMember(released("a-1", ms(100)), "y"),
		acquired("b", "x", "b-1", 11, ms(101)), released("b-1", ms(140)),
		member("c", "y", "c-1", 21, ms(150), "y", "x"), member("c", "x", "c-1", 12, ms(150), "y", "x"),
		ofMember(lost("c-1", ms(300)), "y"), ofMember(lost("c-1", ms(300)), "x"),
	}
	for _, tc := range []struct {
		name   string
		events []Event
		want   []string // checks that must fail, in order; none for a clean history
		// sets is how many sets were acquired, excused how many overlaps
		// must be excused.
		sets, excused int
		// illegal: porcupine must find the history not linearizable.
		illegal bool
	}{
		{name: "clean sets", events: clean, sets: 2},
		{name: "one release ends the whole set", events: []Event{
			member("a", "x", "a-1", 10, ms(0), "x", "y", "z"), member("a", "y", "a-1", 20, ms(0), "x", "y", "z"),
			member("a", "z", "a-1", 30, ms(0), "x", "y", "z"),
			released("a-1", ms(100)),
			member("b", "z", "b-1", 31, ms(101), "z", "x"), member("b", "x", "b-1", 11, ms(101), "z", "x"),
			{Kind: Crashed, Worker: "b", At: ms(150)},
		}, sets: 2},
		{name: "a member not recorded as held", events: []Event{
			member("a", "x", "a-1", 10, ms(0), "x", "y"),
			ofMember(released("a-1", ms(100)), "x"),
		}, want: []string{"set"}, sets: 1},
		{name: "members acquired at different instants", events: []Event{
			member("a", "x", "a-1", 10, ms(0), "x", "y"), member("a", "y", "a-1", 20, ms(30), "x", "y"),
			released("a-1", ms(100)),
		}, want: []string{"set"}, sets: 1},
		{name: "members naming different sets", events: []Event{
			member("a", "x", "a-1", 10, ms(0), "x", "y"), member("a", "y", "a-1", 20, ms(0), "y", "x"),
			released("a-1", ms(100)),
		}, want: []string{"set"}, sets: 1},
		{name: "a holding of a resource the set does not name", events: []Event{
			member("a", "x", "a-1", 10, ms(0), "x"), member("a", "y", "a-1", 20, ms(0), "x"),
			released("a-1", ms(100)),
		}, want: []string{"set"}, sets: 1},
		{name: "a member acquired twice", events: []Event{
			member("a", "x", "a-1", 10, ms(0), "x", "y"), member("a", "y", "a-1", 20, ms(0), "x", "y"),
			member("a", "x", "a-1", 11, ms(0), "x", "y"),
			released("a-1", ms(100)),
		}, want: []string{"set"}, sets: 1},
		{name: "one holder value for a set and a single holding", events: []Event{
			acquired("a", "x", "a-1", 10, ms(0)),
			member("a", "y", "a-1", 20, ms(0), "x", "y"),
			released("a-1", ms(100)),
		}, want: []string{"event"}},
		{name: "a member held on after the set's loss", events: []Event{
			member("a", "x", "a-1", 10, ms(0), "x", "y"), member("a", "y", "a-1", 20, ms(0), "x", "y"),
			ofMember(lost("a-1", ms(100)), "x"), ofMember(released("a-1", ms(200)), "y"),
		}, want: []string{"set-loss"}, sets: 1},
		{name: "a member never ended after the set's loss", events: []Event{
			member("a", "x", "a-1", 10, ms(0), "x", "y"), member("a", "y", "a-1", 20, ms(0), "x", "y"),
			ofMember(lost("a-1", ms(100)), "x"),
		}, want: []string{"unended", "set-loss"}, sets: 1},
		{name: "a member taken while the set holds another", events: []Event{
			member("a", "x", "a-1", 10, ms(0), "x", "y"), member("a", "y", "a-1", 20, ms(0), "x", "y"),
			ofMember(released("a-1", ms(100)), "x"), ofMember(released("a-1", ms(300)), "y"),
			acquired("b", "x", "b-1", 11, ms(150)), released("b-1", ms(200)),
		}, want: []string{"set-overlap"}, sets: 1},
		{name: "a member lost early, taken while the set holds another", events: []Event{
			member("a", "x", "a-1", 10, ms(0), "x", "y"), member("a", "y", "a-1", 20, ms(0), "x", "y"),
			ofMember(lost("a-1", ms(20)), "x"), ofMember(lost("a-1", ms(1001)), "y"),
			acquired("b", "x", "b-1", 11, ms(600)), released("b-1", ms(700)),
		}, want: []string{"set-loss", "set-overlap"}, sets: 1},
		{name: "a member taken from a stale set", events: []Event{
			member("a", "x", "a-1", 10, ms(0), "x", "y"), member("a", "y", "a-1", 20, ms(0), "x", "y"),
			{Kind: Suspended, Worker: "a", At: ms(50), Until: ms(1000)},
			ofMember(released("a-1", ms(60)), "x"), ofMember(lost("a-1", ms(1001)), "y"),
			acquired("b", "x", "b-1", 11, ms(600)), released("b-1", ms(700)),
		}, sets: 1, excused: 1},
		{name: "a member held by another meanwhile", events: []Event{
			member("a", "x", "a-1", 10, ms(0), "x", "y"), member("a", "y", "a-1", 20, ms(0), "x", "y"),
			acquired("b", "y", "b-1", 21, ms(50)), released("b-1", ms(80)),
			released("a-1", ms(100)),
		}, want: []string{"overlap"}, sets: 1, illegal: true},
		{name: "a member's token not growing", events: []Event{
			member("a", "x", "a-1", 10, ms(0), "x", "y"), member("a", "y", "a-1", 20, ms(0), "x", "y"),
			released("a-1", ms(100)),
			member("b", "y", "b-1", 20, ms(150), "y", "x"), member("b", "x", "b-1", 11, ms(150), "y", "x"),
			released("b-1", ms(200)),
		}, want: []string{"token"}, sets: 2, illegal: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New()
			for _, e := range tc.events {
				h.Add(e)
			}
			res := h.Check(lim)
			var got []string
			for _, v := range res.Violations {
				got = append(got, v.Check)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("violations = %v, want %v\n%v", got, tc.want, res.Violations)
			}
			if res.Sets != tc.sets || res.Excused != tc.excused {
				t.Errorf("sets %d, excused %d; want %d and %d", res.Sets, res.Excused, tc.sets, tc.excused)
			}
			lin := res.Linearizable(5*time.Second, "", "")
			if tc.illegal != (lin == "illegal") || Passed(lin) == tc.illegal {
				t.Errorf("Linearizable = %s (passed %v), want illegal %v", lin, Passed(lin), tc.illegal)
			}
		})
	}
}

// TestCheckFIFOSets checks the queue's order for sets: a set's Lock call
// waits in the queue of each member, so a later call that shares a member
// must not acquire it first; one that shares none may.
func TestCheckFIFOSets(t *testing.T) {
	setCall := func(worker string, call, wait int64, holder string, set ...string) Event {
		e := lockCall(worker, set[0], call, wait, OutcomeAcquired, holder, 0)
		e.Set = set
		return e
	}
	// h holds x, y and z from 0 to 100; a waits for {x, y} from 12.
	held := []Event{
		member("h", "x", "h-1", 10, ms(0), "x", "y", "z"), member("h", "y", "h-1", 20, ms(0), "x", "y", "z"),
		member("h", "z", "h-1", 30, ms(0), "x", "y", "z"), released("h-1", ms(100)),
		setCall("a", ms(10), ms(12), "a-1", "x", "y"),
	}
	for _, tc := range []struct {
		name   string
		events []Event
		want   []string
		pairs  int
	}{
		{name: "a later set behind in the shared member's queue", events: append(held[:len(held):len(held)],
			member("a", "x", "a-1", 11, ms(101), "x", "y"), member("a", "y", "a-1", 21, ms(101), "x", "y"), released("a-1", ms(150)),
			setCall("b", ms(20), ms(22), "b-1", "z", "y"),
			member("b", "z", "b-1", 31, ms(151), "z", "y"), member("b", "y", "b-1", 22, ms(151), "z", "y"), released("b-1", ms(200)),
		), pairs: 1},
		{name: "a later set takes the shared member first", events: append(held[:len(held):len(held)],
			setCall("b", ms(20), ms(22), "b-1", "z", "y"),
			member("b", "z", "b-1", 31, ms(101), "z", "y"), member("b", "y", "b-1", 21, ms(101), "z", "y"), released("b-1", ms(150)),
			member("a", "x", "a-1", 11, ms(151), "x", "y"), member("a", "y", "a-1", 22, ms(151), "x", "y"), released("a-1", ms(200)),
		), want: []string{"fifo"}, pairs: 1},
		{name: "a later set of other members goes first", events: append(held[:len(held):len(held)],
			setCall("b", ms(20), ms(22), "b-1", "z"),
			member("b", "z", "b-1", 31, ms(101), "z"), released("b-1", ms(150)),
			member("a", "x", "a-1", 11, ms(151), "x", "y"), member("a", "y", "a-1", 21, ms(151), "x", "y"), released("a-1", ms(200)),
		)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New()
			for _, e := range tc.events {
				h.Add(e)
			}
			res := h.Check(lim)
			var got []string
			for _, v := range res.Violations {
				got = append(got, v.Check)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("violations = %v, want %v\n%v", got, tc.want, res.Violations)
			}
			if res.FIFOPairs != tc.pairs {
				t.Errorf("pairs checked %d, want %d", res.FIFOPairs, tc.pairs)
			}
		})
	}
}
