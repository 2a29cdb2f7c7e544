package reservation

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Operator actions: what a person does to a deployment by hand, not what a
// worker does in its normal life.

// ForceRelease deletes the reservation of resource whoever holds it (an
// operator breaking a stuck or unwanted holding), wakes its waiters, and
// returns the holder value it deleted. A holder of this library learns of
// its loss within milliseconds where the server has client tracking (else
// at its next renewal). It returns "" and no error when nothing was held.
//
// On a semaphore (see the Limit option) it deletes every permit and the
// marker at once, in one transaction (MULTI), so that the name is free for
// anyone, a plain reservation included; each permit's holder learns of its
// loss as a reservation's holder does. It then returns the marker's value,
// "semaphore:<n>" (as NotAcquiredError.Holder names a semaphore), even
// when no permit was held, and reports each permit it deleted with an
// EventReleased whose Key is the permit's and Holder its holder's.
//
// On a quorum (NewQuorum) it deletes the key on every server, and leaves
// on each a record, {K}:forced, that keeps the holder from taking its part
// there back for as long as the key had to live: the holder loses the
// reservation even when the deletions reach it one server at a time.
func (c *Client) ForceRelease(ctx context.Context, resource string) (string, error) {
	if err := c.check(resource); err != nil {
		return "", err
	}
	if c.quorum != nil {
		return c.quorumForceRelease(ctx, resource)
	}
	key := c.Key(resource)
	v, permits, err := c.forceRelease(ctx, key)
	if err != nil {
		return "", c.explain(c.redisError("force release", resource, err))
	}
	if limitOf(v) == 0 && v != "" {
		c.emit(Event{Kind: EventReleased, Resource: resource, Key: key, Holder: v})
	}
	for _, p := range permits {
		c.emit(Event{Kind: EventReleased, Resource: resource, Key: p.Key, Holder: p.Holder})
	}
	return v, nil
}

// forceRelease deletes key whoever holds it and, when it is a semaphore's
// marker, every permit with it, in one transaction. The marker's limit is
// read first; should the name be a semaphore of more permits by the time
// the transaction runs (the permits expired, and a semaphore of another
// limit took the name), the others are deleted in a second one. It returns
// the value deleted from key and the permits deleted, with their holders.
func (c *Client) forceRelease(ctx context.Context, key string) (string, []PermitInfo, error) {
	if c.member {
		// One server of a quorum, which keeps no semaphores: the key
		// alone, and a record that its holder must not take it again
		// here (see Client.retake).
		v, err := forceReleaseScript.Run(ctx, c.rdb, []string{key, companion(key, forcedSuffix)},
			companion(key, channelSuffix), c.publishCommand(), c.args.ttl).Text()
		if err != nil && !errors.Is(err, redis.Nil) {
			return "", nil, err
		}
		return v, nil, nil
	}
	current, err := alone(ctx, c.rdb, func(p redis.Pipeliner) *redis.StringCmd { return p.Get(ctx, key) }).Result()
	if err != nil && !isPerKey(err) {
		return "", nil, err
	}
	read := limitOf(current)
	values, err := c.forceReleaseAll(ctx, key, append([]string{key}, permitKeys(key, read)...))
	if err != nil {
		return "", nil, err
	}
	v, held := values[0], values[1:]
	if n := limitOf(v); n > read {
		more, err := c.forceReleaseAll(ctx, key, permitKeys(key, n)[read:])
		if err != nil {
			return "", nil, err
		}
		held = append(held, more...)
	}
	var permits []PermitInfo
	for i, holder := range held {
		if holder != "" {
			permits = append(permits, PermitInfo{Number: i + 1, Key: permitKey(key, i+1), Holder: holder})
		}
	}
	return v, permits, nil
}

// forceReleaseAll runs the force release script on each of keys (key's or
// its permits), in one MULTI, and returns the value it deleted from each
// ("" where there was none). The notices go to key's release channel,
// which a semaphore's waiters hear for each of its permits.
func (c *Client) forceReleaseAll(ctx context.Context, key string, keys []string) ([]string, error) {
	cmds := make([]*redis.Cmd, len(keys))
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			// By source: a MULTI cannot fall back from EVALSHA.
			cmds[i] = forceReleaseScript.Eval(ctx, p, []string{k}, c.noticeArgs(companion(key, channelSuffix))...)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		// EXECABORT says only that a command was refused: the first
		// command's own error says which, and why (an ACL refusing EVAL).
		for _, cmd := range cmds {
			if cerr := cmd.Err(); cerr != nil && !errors.Is(cerr, redis.Nil) {
				return nil, cerr
			}
		}
		return nil, err
	}
	values := make([]string, len(keys))
	for i, cmd := range cmds {
		v, err := cmd.Text()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		values[i] = v
	}
	return values, nil
}

// PrimeRestartGuard records that the server's data is intact, so that the
// restart guard does not hold back acquisitions on a new server: it sets
// the marker, or lifts a guard that a first acquisition started. It reports
// whether it changed anything (false: primed already). On Cluster it primes
// every slot.
//
// Call it only when no reservation can be held there yet: right after
// starting a fresh server, say. A server that restarted without its data
// looks new, and priming it lets new holders overlap old ones that have not
// seen their loss yet.
func (c *Client) PrimeRestartGuard(ctx context.Context) (bool, error) {
	if err := c.checkOpen(); err != nil {
		return false, err
	}
	if c.quorum != nil {
		return c.quorumPrime(ctx)
	}
	var set []*redis.Cmd
	prime := func(p redis.Pipeliner, key string) {
		// A marker of 0 was set by priming: the guard period after it
		// has long passed. Any other value is the time an acquisition
		// started the guard.
		set = append(set, p.Do(ctx, "SET", key, 0, "GET"))
	}
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if !c.cluster {
			prime(p, guardKey)
			return nil
		}
		for s := range uint16(16384) {
			prime(p, "{"+slotTag(s)+"}:reservation-restart-guard")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("reservation: prime restart guard on %s: %w", c.where(), c.explain(classify(c.where(), err)))
	}
	changed := false
	for _, cmd := range set {
		old, gerr := cmd.Text()
		changed = changed || errors.Is(gerr, redis.Nil) || old != "0"
	}
	return changed, nil
}
