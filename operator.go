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
func (c *Client) ForceRelease(ctx context.Context, resource string) (string, error) {
	if err := c.check(resource); err != nil {
		return "", err
	}
	if c.quorum != nil {
		return c.quorumForceRelease(ctx, resource)
	}
	key := c.Key(resource)
	v, err := forceReleaseScript.Run(ctx, c.rdb, []string{key}, c.noticeArgs(companion(key, channelSuffix))...).Text()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", c.explain(c.redisError("force release", resource, err))
	}
	c.emit(Event{Kind: EventReleased, Resource: resource, Key: key, Holder: v})
	return v, nil
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
