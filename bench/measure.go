package main

import (
	"context"
	"crypto/tls"
	"net"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// roundTrips counts client round trips on every connection a library
// opens: a round trip is a burst of writes on a connection that follows a
// read on it (or its opening). A pipeline or an automatically pipelined
// batch is one round trip; a push received on a subscriber connection,
// which the client did not ask for, is none. The same counter works for
// go-redis (Options.Dialer) and rueidis (ClientOption.DialCtxFn), and sees
// the connections that a library opens by itself (the subscriber and
// tracking connections of this library, the tracking of rueidislock).
// It counts them per server address as well, and, when commands is set
// before the first dial, the commands written.
type roundTrips struct {
	n        atomic.Int64
	commands bool
	cmds     atomic.Int64
	mu       sync.Mutex
	byAddr   map[string]*atomic.Int64
}

func (c *roundTrips) load() int64 { return c.n.Load() }

// of answers the counter of the connections to addr.
func (c *roundTrips) of(addr string) *atomic.Int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byAddr == nil {
		c.byAddr = make(map[string]*atomic.Int64)
	}
	n := c.byAddr[addr]
	if n == nil {
		n = new(atomic.Int64)
		c.byAddr[addr] = n
	}
	return n
}

// dial is a go-redis Options.Dialer.
func (c *roundTrips) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return c.wrap(conn, addr), nil
}

// wrap returns conn, connected to addr, counted.
func (c *roundTrips) wrap(conn net.Conn, addr string) net.Conn {
	cc := &countingConn{Conn: conn, c: c, addr: c.of(addr)}
	if c.commands {
		cc.resp = &respCounter{}
	}
	return cc
}

// dialRueidis is a rueidis ClientOption.DialCtxFn.
func (c *roundTrips) dialRueidis(ctx context.Context, addr string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.wrap(conn, addr), nil
}

type countingConn struct {
	net.Conn
	c       *roundTrips
	addr    *atomic.Int64 // the count of the server it is connected to
	writing atomic.Bool   // the last operation was a write
	resp    *respCounter  // nil unless commands are counted
}

func (cc *countingConn) Write(p []byte) (int, error) {
	if !cc.writing.Swap(true) {
		cc.c.n.Add(1)
		cc.addr.Add(1)
	}
	if cc.resp != nil {
		cc.c.cmds.Add(cc.resp.feed(p))
	}
	return cc.Conn.Write(p)
}

// respCounter counts the commands in what a client writes on one
// connection, in whatever pieces: a client sends each command as a RESP
// array of bulk strings ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"); a line that
// is not one counts as an inline command.
type respCounter struct {
	mu    sync.Mutex
	state respState
	num   int64 // the length being read
	items int64 // bulk strings left in the array
	skip  int64 // bytes left in the bulk string, its CRLF included
}

type respState int

const (
	respCommand   respState = iota // expecting a command: '*'
	respInline                     // in an inline command, up to its LF
	respArrayLen                   // in the array's length, up to its LF
	respBulk                       // expecting a bulk string: '$'
	respBulkLen                    // in the bulk string's length, up to its LF
	respBulkBytes                  // in the bulk string's bytes
)

// feed reads p and returns how many commands it began.
func (rc *respCounter) feed(p []byte) int64 {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var n int64
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch rc.state {
		case respCommand:
			n++
			rc.state, rc.num = respInline, 0
			if b == '*' {
				rc.state = respArrayLen
			}
		case respInline:
			if b == '\n' {
				rc.state = respCommand
			}
		case respArrayLen, respBulkLen:
			switch {
			case b >= '0' && b <= '9':
				rc.num = rc.num*10 + int64(b-'0')
			case b != '\n':
			case rc.state == respArrayLen:
				rc.items, rc.state = rc.num, respBulk
				if rc.items <= 0 {
					rc.state = respCommand
				}
			default:
				rc.skip, rc.state = rc.num+2, respBulkBytes
			}
		case respBulk:
			if b == '$' {
				rc.state, rc.num = respBulkLen, 0
			}
		case respBulkBytes:
			k := min(rc.skip, int64(len(p)-i))
			i += int(k) - 1
			rc.skip -= k
			if rc.skip == 0 {
				rc.items--
				rc.state = respBulk
				if rc.items == 0 {
					rc.state = respCommand
				}
			}
		}
	}
	return n
}

func (cc *countingConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	if n > 0 {
		cc.writing.Store(false)
	}
	return n, err
}

// snapshot is what is measured at the start and the end of a run.
type snapshot struct {
	rt       int64         // client round trips
	rtNodes  []int64       // client round trips to each master (to the one server)
	cpu      time.Duration // this process's user+system CPU
	redisCPU time.Duration // redis-server's user+system CPU, all masters'
	// nodes are the Redis calls per command of every master (every server
	// of a quorum, the one server's alone on a single server), scripts'
	// inner calls included.
	nodes   []map[string]int64
	mallocs uint64
	bytes   uint64
}

// take reads a snapshot; infos are clients of every master (of every
// server) that are not counted.
func take(ctx context.Context, infos []*redis.Client, rt *roundTrips) (snapshot, error) {
	s := snapshot{cpu: processCPU()}
	if rt != nil {
		s.rt = rt.load()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.mallocs, s.bytes = ms.Mallocs, ms.TotalAlloc
	for _, info := range infos {
		if rt != nil {
			s.rtNodes = append(s.rtNodes, rt.of(info.Options().Addr).Load())
		}
		text, err := info.Info(ctx, "commandstats", "cpu").Result()
		if err != nil {
			return s, err
		}
		calls := make(map[string]int64)
		for line := range strings.SplitSeq(text, "\n") {
			line = strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(line, "cmdstat_"):
				name, rest, _ := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
				for field := range strings.SplitSeq(rest, ",") {
					if v, ok := strings.CutPrefix(field, "calls="); ok {
						n, _ := strconv.ParseInt(v, 10, 64)
						calls[name] = n
					}
				}
			case strings.HasPrefix(line, "used_cpu_sys:"), strings.HasPrefix(line, "used_cpu_user:"):
				_, v, _ := strings.Cut(line, ":")
				f, _ := strconv.ParseFloat(v, 64)
				s.redisCPU += time.Duration(f * float64(time.Second))
			}
		}
		s.nodes = append(s.nodes, calls)
	}
	return s, nil
}

// usage is the difference of two snapshots.
type usage struct {
	rt       int64
	rtNodes  []int64 // rt to each master, in the order of nodes
	cpu      time.Duration
	redisCPU time.Duration
	calls    map[string]int64 // of every master; INFO, CONFIG and CLIENT LIST (the bench's own) left out
	// nodes are the calls of each master, as calls.
	nodes   []map[string]int64
	mallocs uint64
	bytes   uint64
}

func (a snapshot) to(b snapshot) usage {
	u := usage{
		rt:       b.rt - a.rt,
		cpu:      b.cpu - a.cpu,
		redisCPU: b.redisCPU - a.redisCPU,
		calls:    make(map[string]int64),
		mallocs:  b.mallocs - a.mallocs,
		bytes:    b.bytes - a.bytes,
	}
	for i, n := range b.rtNodes {
		u.rtNodes = append(u.rtNodes, n-a.rtNodes[i])
	}
	for i, calls := range b.nodes {
		node := make(map[string]int64)
		for name, n := range calls {
			if name == "info" || strings.HasPrefix(name, "config") || name == "client|list" {
				continue
			}
			if d := n - a.nodes[i][name]; d > 0 {
				u.calls[name] += d
				node[name] = d
			}
		}
		u.nodes = append(u.nodes, node)
	}
	return u
}

// add adds v to u, whose calls must not be nil.
func (u *usage) add(v usage) {
	u.rt += v.rt
	for i, n := range v.rtNodes {
		if i == len(u.rtNodes) {
			u.rtNodes = append(u.rtNodes, 0)
		}
		u.rtNodes[i] += n
	}
	u.cpu += v.cpu
	u.redisCPU += v.redisCPU
	u.mallocs += v.mallocs
	u.bytes += v.bytes
	for name, n := range v.calls {
		u.calls[name] += n
	}
	for i, calls := range v.nodes {
		if i == len(u.nodes) {
			u.nodes = append(u.nodes, make(map[string]int64))
		}
		for name, n := range calls {
			u.nodes[i][name] += n
		}
	}
}

// totalCalls is the number of Redis commands executed, those run inside
// scripts included.
func (u usage) totalCalls() int64 {
	var n int64
	for _, c := range u.calls {
		n += c
	}
	return n
}

// callsPer describes the commands per operation, most frequent first:
// "evalsha 2, get 3, set 2".
func (u usage) callsPer(ops float64) string {
	if ops <= 0 {
		return ""
	}
	type kv struct {
		name string
		n    int64
	}
	var all []kv
	for name, n := range u.calls {
		all = append(all, kv{name, n})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].n != all[j].n {
			return all[i].n > all[j].n
		}
		return all[i].name < all[j].name
	})
	var parts []string
	for _, e := range all {
		per := float64(e.n) / ops
		if per < 0.05 {
			continue
		}
		// commandstats names a subcommand "client|caching": a pipe would
		// split the cell of a Markdown table.
		parts = append(parts, strings.ReplaceAll(e.name, "|", " ")+" "+trimFloat(per))
	}
	return strings.Join(parts, ", ")
}

func trimFloat(f float64) string {
	s := strconv.FormatFloat(f, 'f', 1, 64)
	return strings.TrimSuffix(s, ".0")
}

// processCPU is this process's user plus system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// percentile returns the p-th percentile (0..100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p / 100 * float64(len(sorted)-1))
	return sorted[i]
}

func sortedCopy(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// heapInUse is the Go memory in use after a collection: heap objects and
// goroutine stacks (rueidislock keeps goroutines per held lock).
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}
