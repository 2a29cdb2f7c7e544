package reservation

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Info describes what Redis holds for one resource: a reservation, or a
// semaphore (see the Limit option).
type Info struct {
	Resource string
	// Key is the resource's key; for a semaphore, its marker.
	Key string
	// Held reports whether the key exists; for a semaphore, whether any
	// of its permits is held.
	Held bool
	// Holder is the value in the key: "<by>-<id>" for this library, the
	// Node library's value for a Node worker. Empty when not held. For a
	// semaphore it is the holder of the permit that expires first (as a
	// NotAcquiredError names it), and Permits has every holder.
	Holder string
	// TTL is how long the key lives without renewal; zero when it is not
	// held or has no expiry. For a semaphore, the TTL of the permit that
	// expires first.
	TTL time.Duration
	// NoExpiry reports that the key is held and has no expiry; for a
	// semaphore, that no held permit has one.
	NoExpiry bool
	// Token is the last fencing token issued for the resource, 0 when
	// none is known (never held, or the record expired). For a semaphore,
	// the last issued to any of its permits: they share one sequence.
	Token int64
	// Guard is how long the restart guard still refuses acquisitions of
	// the resource, for this Client's guard period; zero when it does not.
	Guard time.Duration
	// GuardUnset reports that the restart guard's marker is missing: the
	// server is new or lost its data, and the next acquisition starts the
	// guard (unless PrimeRestartGuard is called first). Always false when
	// the guard is off.
	GuardUnset bool
	// Waiters are the holder values of the Lock calls that queue for the
	// resource on the server, first come first (the head first), leaving
	// out those whose lease ran out (see Options.NoQueue). Empty in quorum
	// mode, which has no queue across processes.
	Waiters []string
	// Servers is each server's own view in quorum mode (NewQuorum), in
	// the order of the Client's servers; nil otherwise. The fields above
	// are then the majority's: Held when a majority holds the key with
	// one holder value, TTL the time until fewer than a majority hold it,
	// Token the majority-th largest (every later holding's token is above
	// it, and while a holding stands it is the holder's), Guard the time
	// until a majority can vote.
	Servers []ServerInfo
	// Limit is, when the resource is a semaphore, its number of permits,
	// read from its marker (the key holds "semaphore:<n>"); 0 for a
	// reservation. The marker stays while a permit may be held and up to
	// a TTL after the last one: meanwhile a plain reservation of the
	// resource, and a semaphore of another limit, are refused, even when
	// no permit is held (Held false).
	Limit int
	// Permits are a semaphore's held permits, by number; nil for a
	// reservation, and when no permit is held.
	Permits []PermitInfo
}

// PermitInfo is one held permit of a semaphore (see Info.Permits).
type PermitInfo struct {
	// Number is the permit's number, from 1 to the semaphore's limit.
	Number int
	// Key is the permit's own key: its holder's Reservation.Key.
	Key string
	// Holder is the value in the key, "<by>-<id>".
	Holder string
	// TTL is how long the key lives without renewal; zero when it has no
	// expiry.
	TTL time.Duration
	// NoExpiry reports that the key has no expiry.
	NoExpiry bool
}

// ServerInfo is what one server of a quorum holds for a resource (see
// Info.Servers).
type ServerInfo struct {
	// Addr is the server's address.
	Addr string
	// Info is what the server holds; its Servers is nil. Zero when Err is
	// set.
	Info
	// Err is why the server could not be read, or nil.
	Err error
}

// Status reads what Redis holds for resource, in one round trip; for a
// semaphore, a second reads its permits. It never changes anything.
func (c *Client) Status(ctx context.Context, resource string) (Info, error) {
	if err := c.check(resource); err != nil {
		return Info{}, err
	}
	if c.quorum != nil {
		return c.quorumStatus(ctx, resource)
	}
	infos, err := c.infos(ctx, []string{resource})
	if err != nil {
		return Info{}, c.explain(c.redisError("status of", resource, err))
	}
	return infos[0], nil
}

// List returns every held reservation whose resource name matches the glob
// pattern match ("" or "*" for all), walking the keyspace with SCAN (on
// every master of a Cluster), never KEYS. Keys of another type that happen
// to carry the prefix are left out. A semaphore with a permit held is one
// Info, with every holder in its Permits; its permits' keys are not
// listed on their own.
//
// On a Cluster, each master is read on its own: when some cannot be read,
// List returns what the others hold, with an error that matches ErrPartial
// and holds a *NodeError for each master that failed.
func (c *Client) List(ctx context.Context, match string) ([]Info, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if match == "" {
		match = "*"
	}
	if c.quorum != nil {
		return c.quorumList(ctx, match)
	}
	pattern := globEscape(c.opt.Prefix) + match
	cc, ok := c.rdb.(*redis.ClusterClient)
	if !ok {
		infos, err := c.list(ctx, c.rdb, pattern)
		if err != nil {
			return nil, fmt.Errorf("reservation: list %q on %s: %w", match, c.where(), c.explain(classify(c.where(), err)))
		}
		return infos, nil
	}
	var (
		mu     sync.Mutex // the masters are read in parallel
		all    []Info
		failed []error
	)
	masters, err := masters(ctx, cc)
	var wg sync.WaitGroup
	for _, m := range masters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			infos, err := c.list(ctx, m, pattern)
			mu.Lock()
			defer mu.Unlock()
			if isRedirect(err) {
				// Not a master (go-redis answers some node for a slot
				// without one): the masters say the rest.
				return
			}
			if err != nil {
				addr := m.Options().Addr
				failed = append(failed, &NodeError{Addr: addr, Err: classify(addr, err)})
			}
			all = append(all, infos...)
		}()
	}
	wg.Wait()
	if err != nil {
		// Not even the slot map: nothing was read.
		return nil, fmt.Errorf("reservation: list %q on %s: %w", match, c.where(), c.explain(classify(c.where(), err)))
	}
	slices.SortFunc(all, func(a, b Info) int { return strings.Compare(a.Resource, b.Resource) })
	all = slices.CompactFunc(all, func(a, b Info) bool { return a.Resource == b.Resource })
	if len(failed) > 0 {
		return all, fmt.Errorf("reservation: list %q: %w: %d of the cluster's masters could not be read: %w",
			match, ErrPartial, len(failed), errors.Join(failed...))
	}
	return all, nil
}

// masters returns the clients of the masters of the cluster's slot map as
// cc knows it, without reading it again: ForEachMaster reads it from one
// node first, and waits for that node when it does not answer.
func masters(ctx context.Context, cc *redis.ClusterClient) ([]*redis.Client, error) {
	var out []*redis.Client
	seen := make(map[*redis.Client]bool)
	for s := range uint16(16384) {
		m, err := cc.MasterForKey(ctx, "{"+slotTag(s)+"}")
		if err != nil {
			return nil, err // the slot map could not be had
		}
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out, nil
}

// list returns the held reservations whose keys match pattern on rdb: one
// server, or one master of a Cluster.
func (c *Client) list(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]Info, error) {
	var resources []string
	seen := make(map[string]bool)
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		if !seen[key] {
			seen[key] = true
			resources = append(resources, strings.TrimPrefix(key, c.opt.Prefix))
		}
	}
	if err := iter.Err(); err != nil {
		return nil, err
	}
	infos, err := c.infosOn(ctx, rdb, resources)
	if err != nil {
		return nil, err
	}
	held := infos[:0]
	for _, in := range infos {
		if in.Held {
			held = append(held, in)
		}
	}
	return held, nil
}

// infos reads GET, PTTL, the fencing key, the restart-guard marker and the
// queue of each resource in one pipeline, with the server's time; then the
// permits of those that are semaphores, in a second.
func (c *Client) infos(ctx context.Context, resources []string) ([]Info, error) {
	return c.infosOn(ctx, c.rdb, resources)
}

// infosOn is infos through rdb.
func (c *Client) infosOn(ctx context.Context, rdb redis.UniversalClient, resources []string) ([]Info, error) {
	if len(resources) == 0 {
		return nil, nil
	}
	type cmds struct {
		get    *redis.StringCmd
		pttl   *redis.DurationCmd
		token  *redis.StringCmd
		guard  *redis.StringCmd
		queue  *redis.StringSliceCmd
		leases *redis.ZSliceCmd
	}
	all := make([]cmds, len(resources))
	var now *redis.TimeCmd
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		now = p.Time(ctx)
		for i, res := range resources {
			key := c.Key(res)
			all[i] = cmds{p.Get(ctx, key), p.PTTL(ctx, key), p.Get(ctx, companion(key, fenceSuffix)),
				p.Get(ctx, guardKeyFor(key, c.cluster)),
				p.ZRange(ctx, companion(key, queueSuffix), 0, maxWaitersShown-1),
				p.ZRangeWithScores(ctx, companion(key, leaseSuffix), 0, -1)}
		}
		return nil
	})
	if err != nil && !isPerKey(err) && !commandRefused(err) {
		return nil, err
	}
	for i := range all {
		// A missing key, or one of another type, is an answer about that
		// key; any other error (CLUSTERDOWN, MOVED, an ACL refusal) says
		// nothing of it, and must not read as "free".
		for _, cerr := range []error{all[i].get.Err(), all[i].pttl.Err(), all[i].token.Err(), all[i].guard.Err()} {
			if cerr != nil && !isPerKey(cerr) {
				return nil, cerr
			}
		}
		// The queue is shown when it can be read: a user whose ACL was
		// written before it reads the rest.
		for _, cerr := range []error{all[i].queue.Err(), all[i].leases.Err()} {
			if cerr != nil && !isPerKey(cerr) && !commandRefused(cerr) {
				return nil, cerr
			}
		}
	}
	if terr := now.Err(); terr != nil || now.Val().IsZero() {
		// TIME fails, or never ran, only with the connection (refused
		// credentials, which go-redis reports for the pipeline and not
		// for its commands): nothing read can be trusted.
		return nil, cmp.Or(terr, err, errors.New("no reply to TIME"))
	}
	infos := make([]Info, len(resources))
	semaphores := false
	for i, res := range resources {
		in := Info{Resource: res, Key: c.Key(res)}
		if v, err := all[i].get.Result(); err == nil {
			if in.Limit = limitOf(v); in.Limit > 0 {
				semaphores = true
			} else {
				in.Held, in.Holder = true, v
				in.TTL, in.NoExpiry = ttlOf(all[i].pttl.Val())
			}
		}
		if t, err := all[i].token.Int64(); err == nil {
			in.Token = t
		}
		if c.guardMs > 0 {
			set, gerr := all[i].guard.Int64()
			switch {
			case errors.Is(gerr, redis.Nil):
				in.GuardUnset = true
			case gerr == nil && now.Err() == nil:
				left := time.UnixMilli(set).Add(time.Duration(c.guardMs) * time.Millisecond).Sub(now.Val())
				in.Guard = max(left, 0).Round(time.Millisecond)
			}
		}
		in.Waiters = liveWaiters(all[i].queue.Val(), all[i].leases.Val(), now.Val())
		infos[i] = in
	}
	if semaphores {
		if err := readPermits(ctx, rdb, infos); err != nil {
			return nil, err
		}
	}
	return infos, nil
}

// limitOf returns the limit of a semaphore's marker value
// ("semaphore:<n>"), or 0 when v is not one.
func limitOf(v string) int {
	num, ok := strings.CutPrefix(v, semaphorePrefix)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > MaxLimit || strconv.Itoa(n) != num {
		return 0
	}
	return n
}

// ttlOf reads a PTTL reply: the time left, or that the key has no expiry.
func ttlOf(pttl time.Duration) (ttl time.Duration, noExpiry bool) {
	switch {
	case pttl > 0:
		return pttl, false
	case pttl == -1:
		return 0, true
	}
	return 0, false
}

// readPermits reads the permits of the semaphores among infos (those with
// a Limit), all in one pipeline, and fills in their Permits, and Held,
// Holder, TTL and NoExpiry from the permit that expires first.
func readPermits(ctx context.Context, rdb redis.UniversalClient, infos []Info) error {
	type permitCmds struct {
		get  *redis.StringCmd
		pttl *redis.DurationCmd
	}
	all := make([][]permitCmds, len(infos))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, in := range infos {
			for n := 1; n <= in.Limit; n++ {
				key := permitKey(in.Key, n)
				all[i] = append(all[i], permitCmds{p.Get(ctx, key), p.PTTL(ctx, key)})
			}
		}
		return nil
	})
	if err != nil && !isPerKey(err) {
		return err
	}
	for i, cmds := range all {
		in := &infos[i]
		for j, cmd := range cmds {
			for _, cerr := range []error{cmd.get.Err(), cmd.pttl.Err()} {
				if cerr != nil && !isPerKey(cerr) {
					return cerr
				}
			}
			holder, err := cmd.get.Result()
			if err != nil {
				continue // free, or not a string: not a permit's holding
			}
			p := PermitInfo{Number: j + 1, Key: permitKey(in.Key, j+1), Holder: holder}
			p.TTL, p.NoExpiry = ttlOf(cmd.pttl.Val())
			in.Permits = append(in.Permits, p)
		}
		if len(in.Permits) == 0 {
			continue
		}
		// The first to expire; a permit without expiry comes last.
		first := slices.MinFunc(in.Permits, func(a, b PermitInfo) int {
			if a.NoExpiry != b.NoExpiry {
				if a.NoExpiry {
					return 1
				}
				return -1
			}
			return cmp.Compare(a.TTL, b.TTL)
		})
		in.Held, in.Holder, in.TTL, in.NoExpiry = true, first.Holder, first.TTL, first.NoExpiry
	}
	return nil
}

// maxWaitersShown bounds the waiters Status and List read per resource.
const maxWaitersShown = 1000

// liveWaiters returns the waiters of queue, in its order, whose lease in
// leases (expiry in milliseconds of the server's clock) runs after now.
func liveWaiters(queue []string, leases []redis.Z, now time.Time) []string {
	live := make(map[string]bool, len(leases))
	for _, z := range leases {
		if m, ok := z.Member.(string); ok && int64(z.Score) > now.UnixMilli() {
			live[m] = true
		}
	}
	var out []string
	for _, w := range queue {
		if live[w] {
			out = append(out, w)
		}
	}
	return out
}

// isPerKey reports whether a command's error is an answer about its key:
// the key is missing, or of another type.
func isPerKey(err error) bool {
	return errors.Is(err, redis.Nil) || isWrongType(err)
}

// globEscape escapes the glob characters of s for SCAN MATCH.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
