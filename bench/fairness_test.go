package main

import (
	"testing"
	"time"
)

func TestOrderOf(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	v := func(arrived, served float64) visit {
		if served < 0 {
			return visit{arrived: at(arrived)}
		}
		return visit{arrived: at(arrived), served: at(served)}
	}
	tests := []struct {
		name     string
		vs       []visit
		from, to float64
		burst    float64 // ms; negative: none
		slack    time.Duration
		want     fairness
		waits    int
	}{
		{"first come first served", []visit{v(0, 1), v(1, 2), v(2, 3)}, 0, 10, -1, 0,
			fairness{Served: 3, InOrder: 3, Overtaken: 0, Longest: time.Millisecond}, 3},
		{"last come first served", []visit{v(0, 5), v(1, 4), v(2, 3)}, 0, 10, -1, 0,
			fairness{Served: 3, InOrder: 1, Overtaken: 2, Longest: 5 * time.Millisecond}, 3},
		{"a waiter never served", []visit{v(0, -1), v(1, 2), v(2, 3)}, 0, 10, -1, 0,
			fairness{Served: 2, InOrder: 0, Overtaken: 2, Longest: 10 * time.Millisecond}, 2},
		{"served after the window counts as waiting", []visit{v(0, 12), v(1, 2)}, 0, 10, -1, 0,
			fairness{Served: 1, InOrder: 0, Overtaken: 1, Longest: 10 * time.Millisecond}, 1},
		{"arrivals within the slack", []visit{v(0, 3), v(0.5, 2)}, 0, 10, -1, time.Millisecond,
			fairness{Served: 2, InOrder: 2, Overtaken: 0, Longest: 3 * time.Millisecond}, 2},
		{"arrivals beyond the slack", []visit{v(0, 3), v(1.5, 2)}, 0, 10, -1, time.Millisecond,
			fairness{Served: 2, InOrder: 1, Overtaken: 1, Longest: 3 * time.Millisecond}, 2},
		{"arrivals of the burst are simultaneous", []visit{v(0, 3), v(0.2, 1), v(0.4, 2), v(5, 6)}, 0, 10, 0.4, 0,
			fairness{Served: 4, InOrder: 4, Overtaken: 0, Longest: 3 * time.Millisecond}, 4},
		{"served before the window not counted", []visit{v(0, 1), v(0.5, 6), v(2, 5)}, 4, 10, -1, 0,
			fairness{Served: 2, InOrder: 1, Overtaken: 1, Longest: 5500 * time.Microsecond}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var burst time.Time
			if tt.burst >= 0 {
				burst = at(tt.burst)
			}
			got, waits := orderOf(tt.vs, at(tt.from), at(tt.to), burst, tt.slack)
			if got != tt.want {
				t.Errorf("orderOf = %+v, want %+v", got, tt.want)
			}
			if len(waits) != tt.waits {
				t.Errorf("orderOf gave %d waits, want %d", len(waits), tt.waits)
			}
		})
	}
}

func TestBurst(t *testing.T) {
	t0 := time.Unix(1000, 0)
	vs := []visit{{arrived: t0.Add(3)}, {arrived: t0.Add(1)}, {arrived: t0.Add(2)}, {arrived: t0.Add(9)}}
	if got, want := burst(vs, 3), t0.Add(3); !got.Equal(want) {
		t.Errorf("burst(3) = %v, want %v", got, want)
	}
	if got := burst(vs, 5); !got.IsZero() {
		t.Errorf("burst of more waiters than visits = %v, want zero", got)
	}
}

func TestRespCounter(t *testing.T) {
	stream := "*1\r\n$4\r\nPING\r\n" + // a command
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n" + // an empty bulk string
		"*2\r\n$3\r\nGET\r\n$12\r\n*1\r\n$4\r\nPING\r\n" + // bytes that look like a command, inside a bulk string
		"PING\r\n" // an inline command
	const want = 4
	for _, size := range []int{1, 2, 3, 7, len(stream)} {
		var rc respCounter
		var got int64
		for i := 0; i < len(stream); i += size {
			got += rc.feed([]byte(stream[i:min(i+size, len(stream))]))
		}
		if got != want {
			t.Errorf("in pieces of %d bytes: %d commands, want %d", size, got, want)
		}
	}
}
