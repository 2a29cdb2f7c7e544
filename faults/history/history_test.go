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

// ms is an instant in milliseconds from an arbitrary origin.
func ms(n int64) int64 { return 1_700_000_000_000_000_000 + n*int64(time.Millisecond) }

func acquired(worker, resource, holder string, token, at int64) Event {
	return Event{Kind: Acquired, Worker: worker, Resource: resource, Holder: holder, Token: token, Call: at - int64(time.Millisecond), At: at}
}

func released(holder string, at int64) Event {
	return Event{Kind: Released, Holder: holder, At: at, Sent: at, Reply: at + int64(time.Millisecond), Validity: int64(100 * time.Millisecond), Outcome: OutcomeOK}
}

func lost(holder string, at int64) Event {
	return Event{Kind: Lost, Holder: holder, At: at, Outcome: LostCause}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []Event
		want   []string // checks that must fail, in order; none for a clean history
		// excused is how many overlaps must be excused.
		excused int
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
		}, want: []string{"overlap"}},
		{name: "overlap with a holding that never ended", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			acquired("b", "r", "b-1", 11, ms(100)), released("b-1", ms(200)),
		}, want: []string{"unended", "overlap"}},
		{name: "token not growing", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)), released("a-1", ms(100)),
			acquired("b", "r", "b-1", 10, ms(101)), released("b-1", ms(200)),
		}, want: []string{"token"}},
		{name: "loss with the wrong cause", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Lost, Holder: "a-1", At: ms(50), Outcome: "reservation: released"},
		}, want: []string{"cause"}},
		{name: "release found the key gone with validity left", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Released, Holder: "a-1", At: ms(100), Sent: ms(100), Reply: ms(101), Validity: int64(200 * time.Millisecond), Outcome: OutcomeNotHeld},
		}, want: []string{"silent-loss"}},
		{name: "release found the key gone after the local deadline", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Released, Holder: "a-1", At: ms(100), Sent: ms(100), Reply: ms(120), Validity: int64(10 * time.Millisecond), Outcome: OutcomeNotHeld},
		}},
		{name: "release found the key gone after a FLUSHALL", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: DataLost, At: ms(50), Until: ms(51)},
			{Kind: Released, Holder: "a-1", At: ms(100), Sent: ms(100), Reply: ms(101), Validity: int64(200 * time.Millisecond), Outcome: OutcomeNotHeld},
		}},
		{name: "a FLUSHALL excuses no overlap", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: DataLost, At: ms(50), Until: ms(51)},
			acquired("b", "r", "b-1", 11, ms(60)), released("b-1", ms(200)),
			lost("a-1", ms(70)),
		}, want: []string{"overlap"}},
		{name: "crashed holder", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Crashed, Worker: "a", At: ms(50)},
			acquired("b", "r", "b-1", 11, ms(600)), released("b-1", ms(700)),
		}},
		{name: "suspended holder fenced off", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Suspended, Worker: "a", At: ms(50), Until: ms(1000)},
			acquired("b", "r", "b-1", 11, ms(600)), released("b-1", ms(700)),
			lost("a-1", ms(1001)),
		}, excused: 1},
		{name: "suspended holder not fenced off", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Suspended, Worker: "a", At: ms(50), Until: ms(1000)},
			acquired("b", "r", "b-1", 9, ms(600)), released("b-1", ms(700)),
			lost("a-1", ms(1001)),
		}, want: []string{"token", "overlap"}},
		{name: "suspension after the takeover excuses nothing", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			acquired("b", "r", "b-1", 11, ms(40)), released("b-1", ms(45)),
			{Kind: Suspended, Worker: "a", At: ms(50), Until: ms(1000)},
			lost("a-1", ms(1001)),
		}, want: []string{"overlap"}},
		{name: "revoked key", events: []Event{
			acquired("a", "r", "a-1", 10, ms(0)),
			{Kind: Revoked, Resource: "r", Holder: "a-1", At: ms(50), Until: ms(51)},
			acquired("b", "r", "b-1", 11, ms(52)), released("b-1", ms(60)),
			lost("a-1", ms(150)),
		}, excused: 1},
		{name: "events of a stranger", events: []Event{
			lost("x-1", ms(10)),
		}, want: []string{"event"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New()
			for _, e := range tc.events {
				h.Add(e)
			}
			res := h.Check()
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
			lin := res.Linearizable(5*time.Second, "", "")
			wantLin := "ok"
			for _, c := range tc.want {
				if c == "overlap" || c == "token" {
					wantLin = "illegal"
				}
			}
			if lin != wantLin {
				t.Errorf("Linearizable = %s, want %s", lin, wantLin)
			}
		})
	}
}

func TestAddJSON(t *testing.T) {
	h := New()
	if err := h.AddJSON([]byte(`{"kind":"acquired","worker":"w","resource":"r","holder":"w-1","token":5,"at":10}`)); err != nil {
		t.Fatal(err)
	}
	if err := h.AddJSON([]byte(`not json`)); err == nil {
		t.Error("AddJSON(not json): no error")
	}
	got := h.Events()
	if len(got) != 1 || got[0].Holder != "w-1" || got[0].Token != 5 || got[0].Kind != Acquired {
		t.Errorf("events = %+v", got)
	}
}
