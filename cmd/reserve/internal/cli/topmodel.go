package cli

// What reserve top shows, apart from how: the holdings of each scan, the
// changes between two scans, and the rows of the table, sorted and
// filtered. Nothing here touches Redis or the terminal.

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis-reservation/reservation"
)

// topItem is one holding that top follows from scan to scan: a
// reservation, or one permit of a semaphore.
type topItem struct {
	key    string // its Redis key: the reservation's, or the permit's
	label  string // the resource, or "<resource> permit <n>"
	sem    string // for a permit, its semaphore's key (the marker)
	holder string
	// expires is when the key expires without renewal, as the scan that
	// read it saw it: at or after this time (the scan's start plus the
	// TTL it read); zero for a key without expiry.
	expires time.Time
	// since is when top first saw this holding, when it appeared while
	// top watched; zero when it was there at the first scan.
	since time.Time
}

// topItems returns the holdings of infos, a complete or partial scan that
// started at start, by key. A quorum's resource without a majority is no
// holding.
func topItems(infos []reservation.Info, start time.Time) map[string]topItem {
	items := make(map[string]topItem)
	expiry := func(ttl time.Duration, noExpiry bool) time.Time {
		if noExpiry {
			return time.Time{}
		}
		return start.Add(ttl)
	}
	for _, in := range infos {
		if in.Limit > 0 {
			for _, p := range in.Permits {
				items[p.Key] = topItem{key: p.Key, label: permitLabel(in.Resource, p.Number), sem: in.Key,
					holder: p.Holder, expires: expiry(p.TTL, p.NoExpiry)}
			}
			continue
		}
		if in.Held {
			items[in.Key] = topItem{key: in.Key, label: in.Resource, holder: in.Holder, expires: expiry(in.TTL, in.NoExpiry)}
		}
	}
	return items
}

func permitLabel(resource string, n int) string {
	return resource + " permit " + strconv.Itoa(n)
}

// changeKind names a change that top reports.
type changeKind string

const (
	changeAcquired  changeKind = "acquired"
	changeReleased  changeKind = "released"
	changeExpired   changeKind = "expired"
	changeTakenOver changeKind = "taken over"
	changeDeleted   changeKind = "deleted"
)

// topChange is one change between two scans.
type topChange struct {
	at     time.Time
	kind   changeKind
	label  string // the resource, or "<resource> permit <n>"
	holder string // the holder concerned: the new one for acquired and taken over
	from   string // taken over: the previous holder
	note   string // why top says so, when it is not plain
}

// String is the change as top prints it, after its time.
func (c topChange) String() string {
	s := fmt.Sprintf("%-10s  %s  %s", c.kind, c.label, c.holder)
	if c.from != "" {
		s += " from " + c.from
	}
	if c.note != "" {
		s += " (" + c.note + ")"
	}
	return s
}

// Thresholds of the tracker.
const (
	// expirySlack: a key gone this long before the expiry it last showed
	// still counts as expired (the clocks of scans and server differ by
	// about a round trip).
	expirySlack = 100 * time.Millisecond
)

// topTracker diffs each complete scan with the last one, and takes the
// release notices that come between (notice, from the subscriber's
// goroutine), to tell a release from an expiry.
type topTracker struct {
	// noticesHeard: the release notices are subscribed to. Without them
	// a key gone before its expiry was released or deleted, which top
	// cannot tell apart.
	noticesHeard bool
	// window is how long after an expiry an acquisition of the same key
	// by another holder is a takeover (it waited for the expiry).
	window time.Duration

	mu      sync.Mutex
	notices map[string]time.Time // release notices by key (the payload), when they came
	shown   map[string]bool      // the keys of prev, and their semaphores': their notices matter

	prev    map[string]topItem // the last complete scan's holdings; nil before the first
	prevAt  time.Time          // when it started
	expired map[string]topItem // holdings seen expire within window, by key; since is when
	items   map[string]topItem // the holdings to show: the last scan's, complete or partial
}

func newTopTracker(noticesHeard bool, interval time.Duration) *topTracker {
	return &topTracker{
		noticesHeard: noticesHeard,
		window:       2*interval + time.Second,
		notices:      make(map[string]time.Time),
		shown:        make(map[string]bool),
		expired:      make(map[string]topItem),
	}
}

// notice takes a release notice for key, which came at, and reports
// whether it concerns a holding shown: then a scan should follow at once.
func (t *topTracker) notice(key string, at time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.notices[key] = at
	return t.shown[key]
}

// releasedSince answers when a release notice for it came, if one came at
// or after after. t.mu is held.
func (t *topTracker) releasedSince(it topItem, after time.Time) (time.Time, bool) {
	at, ok := t.notices[it.key]
	if !ok && it.sem != "" {
		// A force release of a semaphore names its marker.
		at, ok = t.notices[it.sem]
	}
	return at, ok && !at.Before(after)
}

// scan takes the holdings of a scan of infos that started at start and
// ended at now. A complete scan is diffed with the last complete one, and
// answers the changes between them, in the order of the keys; a partial
// one (some Cluster master or quorum server not read) only updates what is
// shown: a holding missing from it may be on a node not read.
func (t *topTracker) scan(infos []reservation.Info, start, now time.Time, complete bool) []topChange {
	cur := topItems(infos, start)
	t.mu.Lock()
	defer t.mu.Unlock()
	first := t.prev == nil
	for k, it := range cur {
		if old, ok := t.items[k]; ok && old.holder == it.holder {
			it.since = old.since
		} else if old, ok := t.prev[k]; ok && old.holder == it.holder {
			it.since = old.since
		} else if !first {
			it.since = start
		}
		cur[k] = it
	}
	t.items = cur
	if !complete {
		return nil
	}
	var changes []topChange
	if !first {
		changes = t.diff(cur, now)
	}
	t.prev, t.prevAt = cur, start
	t.shown = make(map[string]bool, len(cur))
	for k, it := range cur {
		t.shown[k] = true
		if it.sem != "" {
			t.shown[it.sem] = true
		}
	}
	for k, at := range t.notices {
		if at.Before(start) {
			delete(t.notices, k)
		}
	}
	for k, it := range t.expired {
		if now.Sub(it.since) > t.window {
			delete(t.expired, k)
		}
	}
	return changes
}

// diff answers the changes from t.prev to cur, seen at now. t.mu is held.
func (t *topTracker) diff(cur map[string]topItem, now time.Time) []topChange {
	keys := make([]string, 0, len(cur)+len(t.prev))
	for k := range t.prev {
		keys = append(keys, k)
	}
	for k := range cur {
		if _, ok := t.prev[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(strings.Compare(labelOf(t.prev, cur, a), labelOf(t.prev, cur, b)), strings.Compare(a, b))
	})
	var out []topChange
	for _, k := range keys {
		old, had := t.prev[k]
		it, has := cur[k]
		switch {
		case had && !has:
			out = append(out, t.gone(old, now))
		case had && has && old.holder != it.holder:
			if at, ok := t.releasedSince(old, t.prevAt); ok {
				out = append(out, topChange{at: at, kind: changeReleased, label: old.label, holder: old.holder},
					topChange{at: now, kind: changeAcquired, label: it.label, holder: it.holder})
				break
			}
			note := "not released: deleted or overwritten before its expiry"
			switch {
			case !t.noticesHeard:
				note = "release notices are not heard here"
			case t.expiredBy(old, now):
				note = "after it expired"
			}
			out = append(out, topChange{at: now, kind: changeTakenOver, label: it.label, holder: it.holder, from: old.holder, note: note})
		case !had && has:
			if e, ok := t.expired[k]; ok && e.holder != it.holder {
				if _, released := t.releasedSince(e, e.since); !released {
					delete(t.expired, k)
					out = append(out, topChange{at: now, kind: changeTakenOver, label: it.label, holder: it.holder,
						from: e.holder, note: "after it expired"})
					break
				}
			}
			out = append(out, topChange{at: now, kind: changeAcquired, label: it.label, holder: it.holder})
		}
	}
	return out
}

// gone answers the change of old, a holding missing from the scan at now:
// released when its release notice came since the last scan; expired when
// it is gone at (or after) the expiry the last scan saw; deleted otherwise
// (a Node worker's release, a DEL, a flush: no notice).
func (t *topTracker) gone(old topItem, now time.Time) topChange {
	if at, ok := t.releasedSince(old, t.prevAt); ok {
		return topChange{at: at, kind: changeReleased, label: old.label, holder: old.holder}
	}
	if t.expiredBy(old, now) {
		e := old
		e.since = now
		t.expired[old.key] = e
		return topChange{at: now, kind: changeExpired, label: old.label, holder: old.holder, note: "not renewed"}
	}
	if !t.noticesHeard {
		return topChange{at: now, kind: changeReleased, label: old.label, holder: old.holder,
			note: "before its expiry; release notices are not heard here, so maybe deleted"}
	}
	return topChange{at: now, kind: changeDeleted, label: old.label, holder: old.holder,
		note: "before its expiry, without a release notice"}
}

// expiredBy reports whether it may have expired by now: it has an expiry,
// and now is at or after it, give or take expirySlack.
func (t *topTracker) expiredBy(it topItem, now time.Time) bool {
	return !it.expires.IsZero() && !now.Add(expirySlack).Before(it.expires)
}

func labelOf(a, b map[string]topItem, k string) string {
	if it, ok := a[k]; ok {
		return it.label
	}
	return b[k].label
}

// snapshotItems returns a copy of the holdings to show.
func (t *topTracker) snapshotItems() map[string]topItem {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]topItem, len(t.items))
	for k, v := range t.items {
		out[k] = v
	}
	return out
}

// topSort is a column top sorts by.
type topSort int

const (
	sortResource topSort = iota
	sortHolder
	sortLeft
	sortAge
	numSorts
)

func (s topSort) String() string {
	return [...]string{"resource", "holder", "time left", "age"}[s]
}

// order says in words which way s sorts, or its reverse.
func (s topSort) order(reverse bool) string {
	ways := [...][2]string{{"A to Z", "Z to A"}, {"A to Z", "Z to A"}, {"shortest first", "longest first"}, {"oldest first", "newest first"}}
	if reverse {
		return ways[s][1]
	}
	return ways[s][0]
}

// topColumns are the columns of the table.
var topColumns = []string{"RESOURCE", "HOLDER", "EXPIRES IN", "TOKEN", "HELD FOR", "QUEUE"}

// column is the column of the table that s sorts by.
func (s topSort) column() int {
	return [...]int{0, 1, 2, 4}[s]
}

// arrow shows which way s sorts its column's values: up when they grow
// down the table (names A to Z, time left shortest first), down when
// they shrink (age oldest first); reverse turns it round.
func (s topSort) arrow(reverse bool) string {
	if (s == sortAge) != reverse {
		return "▼"
	}
	return "▲"
}

// rowKind says what a row of the table is, for its colour.
type rowKind int

const (
	rowHeld       rowKind = iota // a reservation's row
	rowSemaphore                 // a semaphore's row
	rowNoMajority                // a quorum's resource that no majority holds
	rowPermit                    // a permit of the semaphore above
	rowWaiter                    // a worker queued for the resource above
	rowServer                    // a server's view, in quorum mode
	rowError                     // a server that could not be read
)

// topRow is one row of the table.
type topRow struct {
	kind  rowKind
	cells [6]string
}

// topGroup is a resource's rows: its own, then its permits, its waiters
// and its servers' views, which stay below it whatever the order.
type topGroup struct {
	rows []topRow
	// The sort keys: the resource, its holder (a semaphore's first
	// permit's), its time left (the least; unknown when it has no
	// expiry) and its age (the oldest holding's; unknown when top cannot
	// tell).
	resource, holder string
	left, age        time.Duration
	leftOK, ageOK    bool
	// text is what the filter looks at, lowercase: the resource and every
	// holder and waiter.
	text []string
}

// ourHolder matches the holder values of this library: "<by>-" and 24
// hex digits. A Node worker's is "<by>-<pid>".
var ourHolder = regexp.MustCompile(`-[0-9a-f]{24}$`)

// holdingAge answers how long ago the holding of holder with token was
// acquired, at now: from its token for a holder of this library (the
// server's time in µs at acquisition), else from when top saw it appear.
func holdingAge(holder string, token int64, since, now time.Time) (time.Duration, bool) {
	if token > 0 && ourHolder.MatchString(holder) && tokenAge(token, now) != "" {
		return max(now.Sub(time.UnixMicro(token)), 0), true
	}
	if !since.IsZero() {
		return max(now.Sub(since), 0), true
	}
	return 0, false
}

func ageCell(d time.Duration, ok bool) string {
	if !ok {
		return "-"
	}
	return "~" + fmtDuration(d)
}

// topGroups returns the rows of infos, a scan, with the holdings that the
// tracker knows (for ages) at now; cause says how a quorum's server failed.
func topGroups(infos []reservation.Info, items map[string]topItem, cause causeFunc, now time.Time) []topGroup {
	groups := make([]topGroup, 0, len(infos))
	for _, in := range infos {
		g := topGroup{resource: in.Resource, text: []string{strings.ToLower(in.Resource)}}
		queue := "-"
		if n := len(in.Waiters); n > 0 {
			queue = strconv.Itoa(n)
		}
		switch {
		case in.Limit > 0:
			g.rows = append(g.rows, topRow{kind: rowSemaphore, cells: [6]string{in.Resource,
				fmt.Sprintf("%d of %d %s held", len(in.Permits), in.Limit, plural(in.Limit, "permit", "permits")),
				"-", listToken(in.Token), "-", queue}})
			for _, p := range in.Permits {
				it := items[p.Key]
				age, ageOK := holdingAge(p.Holder, 0, it.since, now)
				left := fmtDuration(p.TTL)
				if p.NoExpiry {
					left = "never"
				} else if !g.leftOK || p.TTL < g.left {
					g.left, g.leftOK = p.TTL, true
				}
				if ageOK && (!g.ageOK || age > g.age) {
					g.age, g.ageOK = age, true
				}
				if g.holder == "" {
					g.holder = p.Holder
				}
				g.text = append(g.text, strings.ToLower(p.Holder))
				g.rows = append(g.rows, topRow{kind: rowPermit, cells: [6]string{"  permit " + strconv.Itoa(p.Number),
					p.Holder, left, "-", ageCell(age, ageOK), ""}})
			}
		case !in.Held:
			g.rows = append(g.rows, topRow{kind: rowNoMajority, cells: [6]string{in.Resource, "(no majority)", "-", listToken(in.Token), "-", queue}})
		default:
			it := items[in.Key]
			g.holder = in.Holder
			g.age, g.ageOK = holdingAge(in.Holder, in.Token, it.since, now)
			g.left, g.leftOK = in.TTL, !in.NoExpiry
			g.text = append(g.text, strings.ToLower(in.Holder))
			g.rows = append(g.rows, topRow{kind: rowHeld, cells: [6]string{in.Resource, in.Holder, listTTL(in),
				listToken(in.Token), ageCell(g.age, g.ageOK), queue}})
		}
		for i, w := range in.Waiters {
			g.text = append(g.text, strings.ToLower(w))
			g.rows = append(g.rows, topRow{kind: rowWaiter, cells: [6]string{"  queued " + strconv.Itoa(i+1), w, "", "", "", ""}})
		}
		for _, s := range in.Servers {
			addr := "  " + hostPort(s.Addr)
			switch {
			case s.Err != nil:
				g.rows = append(g.rows, topRow{kind: rowError, cells: [6]string{addr, cause(s.Addr, s.Err), "", "", "", ""}})
			case !s.Held:
				g.rows = append(g.rows, topRow{kind: rowServer, cells: [6]string{addr, "free", "-", listToken(s.Token), "", ""}})
			default:
				g.rows = append(g.rows, topRow{kind: rowServer, cells: [6]string{addr, s.Holder, listTTL(s.Info), listToken(s.Token), "", ""}})
			}
		}
		groups = append(groups, g)
	}
	return groups
}

// sortGroups sorts groups by s: resources and holders A to Z, time left
// shortest first, age oldest first; reverse turns that round. Unknown
// values go last either way, then ties by resource.
func sortGroups(groups []topGroup, s topSort, reverse bool) {
	known := func(a, b bool) int { // known before unknown
		switch {
		case a == b:
			return 0
		case a:
			return -1
		}
		return 1
	}
	slices.SortStableFunc(groups, func(x, y topGroup) int {
		var c int
		switch s {
		case sortHolder:
			if c = known(x.holder != "", y.holder != ""); c != 0 {
				return c
			}
			c = strings.Compare(x.holder, y.holder)
		case sortLeft:
			if c = known(x.leftOK, y.leftOK); c != 0 {
				return c
			}
			c = cmp.Compare(x.left, y.left)
		case sortAge:
			if c = known(x.ageOK, y.ageOK); c != 0 {
				return c
			}
			c = cmp.Compare(y.age, x.age)
		}
		if reverse {
			c = -c
		}
		if c != 0 {
			return c
		}
		if c = strings.Compare(x.resource, y.resource); reverse && s == sortResource {
			c = -c
		}
		return c
	})
}

// topFilter is the filter typed in top: a glob (* ? [abc], \ to escape)
// when it has one of those characters, else a substring; either way
// without regard to case, matched against a resource and its holders and
// waiters.
type topFilter struct {
	text string
	re   *regexp.Regexp // nil for a substring
}

func newTopFilter(text string) topFilter {
	f := topFilter{text: strings.ToLower(text)}
	if strings.ContainsAny(text, `*?[\`) {
		f.re = globRegexp(f.text)
	}
	return f
}

// match reports whether g passes the filter.
func (f topFilter) match(g topGroup) bool {
	if f.text == "" {
		return true
	}
	for _, s := range g.text {
		if f.re != nil && f.re.MatchString(s) || f.re == nil && strings.Contains(s, f.text) {
			return true
		}
	}
	return false
}

// globRegexp returns the regexp of glob, a Redis-style glob matched
// against a whole string: * any run, ? any one character, [...] a class
// ([^...] or [!...] its complement), \ escapes the next character. A
// class left open matches its "[" literally.
func globRegexp(glob string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	rs := []rune(glob)
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '\\':
			if i+1 < len(rs) {
				i++
				b.WriteString(regexp.QuoteMeta(string(rs[i])))
			} else {
				b.WriteString(`\\`)
			}
		case '[':
			j := i + 1
			if j < len(rs) && (rs[j] == '^' || rs[j] == '!') {
				j++
			}
			if j < len(rs) && rs[j] == ']' {
				j++
			}
			for j < len(rs) && rs[j] != ']' {
				j++
			}
			if j >= len(rs) {
				b.WriteString(`\[`)
				break
			}
			class := rs[i+1 : j]
			b.WriteString("[")
			if len(class) > 0 && (class[0] == '^' || class[0] == '!') {
				b.WriteString("^")
				class = class[1:]
			}
			for _, c := range class {
				if c == '\\' || c == '[' || c == ']' || c == '^' {
					b.WriteString(`\`)
				}
				b.WriteRune(c)
			}
			b.WriteString("]")
			i = j
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return regexp.MustCompile(`^` + regexp.QuoteMeta(glob) + `$`)
	}
	return re
}
