package reservation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Info describes what Redis holds for one resource, as the reserve
// command's status and list show it.
type Info struct {
	Resource string `json:"resource"`
	Key      string `json:"key"`
	// Held says whether the key exists.
	Held bool `json:"held"`
	// Holder is the value in the key: "<by>-<id>" for this library, the
	// Node library's value for a Node worker. Empty when not held.
	Holder string `json:"holder"`
	// TTL is how long the key lives without renewal: -1 when it has no
	// expiry, 0 when not held.
	TTL time.Duration `json:"-"`
	// TTLMillis is TTL in milliseconds, for JSON.
	TTLMillis int64 `json:"ttl_ms"`
	// Token is the last fencing token issued for the resource, 0 when
	// none is known (never held, or the record expired).
	Token int64 `json:"token"`
}

// Status reads what Redis holds for resource, in one round trip. It never
// changes anything.
func (c *Client) Status(ctx context.Context, resource string) (Info, error) {
	if err := c.check(resource); err != nil {
		return Info{}, err
	}
	infos, err := c.infos(ctx, []string{resource})
	if err != nil {
		return Info{}, c.redisError("status of", resource, err)
	}
	return infos[0], nil
}

// List returns every held reservation whose resource name matches the glob
// pattern match ("" or "*" for all), walking the keyspace with SCAN (on
// every master of a Cluster), never KEYS. Keys of another type that happen
// to carry the prefix are left out.
func (c *Client) List(ctx context.Context, match string) ([]Info, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	if match == "" {
		match = "*"
	}
	pattern := globEscape(c.opt.Prefix) + match
	var resources []string
	seen := make(map[string]bool)
	scan := func(ctx context.Context, rdb redis.Cmdable) error {
		iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			if !seen[key] {
				seen[key] = true
				resources = append(resources, strings.TrimPrefix(key, c.opt.Prefix))
			}
		}
		return iter.Err()
	}
	var err error
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		var mu sync.Mutex // ForEachMaster calls in parallel
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, m)
		})
	} else {
		err = scan(ctx, c.rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("reservation: list %q on %s: %w", match, c.addr, err)
	}
	infos, err := c.infos(ctx, resources)
	if err != nil {
		return nil, fmt.Errorf("reservation: list %q on %s: %w", match, c.addr, err)
	}
	held := infos[:0]
	for _, in := range infos {
		if in.Held {
			held = append(held, in)
		}
	}
	return held, nil
}

// infos reads GET, PTTL and the fencing key of each resource in one
// pipeline.
func (c *Client) infos(ctx context.Context, resources []string) ([]Info, error) {
	if len(resources) == 0 {
		return nil, nil
	}
	type cmds struct {
		get   *redis.StringCmd
		pttl  *redis.DurationCmd
		token *redis.StringCmd
	}
	all := make([]cmds, len(resources))
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, res := range resources {
			key := c.Key(res)
			all[i] = cmds{p.Get(ctx, key), p.PTTL(ctx, key), p.Get(ctx, companion(key, fenceSuffix))}
		}
		return nil
	})
	if err != nil && !isPerCommand(err) {
		return nil, err
	}
	infos := make([]Info, len(resources))
	for i, res := range resources {
		in := Info{Resource: res, Key: c.Key(res)}
		if v, err := all[i].get.Result(); err == nil {
			in.Held, in.Holder = true, v
			switch d := all[i].pttl.Val(); {
			case d > 0:
				in.TTL, in.TTLMillis = d, d.Milliseconds()
			case d == -1:
				in.TTL, in.TTLMillis = -1, -1
			}
		}
		if t, err := all[i].token.Int64(); err == nil {
			in.Token = t
		}
		infos[i] = in
	}
	return infos, nil
}

// isPerCommand reports whether a pipeline's error belongs to one command
// (a missing key, a key of another type), not to the connection.
func isPerCommand(err error) bool {
	var rerr redis.Error
	return errors.Is(err, redis.Nil) || errors.As(err, &rerr)
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

// ForceRelease deletes the reservation of resource whoever holds it (an
// operator breaking a stuck or unwanted holding), wakes its waiters, and
// answers the holder value it deleted. The holder finds out at its next
// renewal. It answers "" and no error when nothing was held.
func (c *Client) ForceRelease(ctx context.Context, resource string) (string, error) {
	if err := c.check(resource); err != nil {
		return "", err
	}
	key := c.Key(resource)
	v, err := forceReleaseScript.Run(ctx, c.rdb, []string{key}, companion(key, channelSuffix)).Text()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", c.redisError("force release", resource, err)
	}
	c.log.Info("reservation-released", "resource", resource, "key", key, "holder", v, "forced", true)
	return v, nil
}

// PrimeRestartGuard records that the server's data is intact, so that the
// restart guard does not hold back the first acquisitions on a new server.
// Call it only when no reservation can be held there yet: right after
// starting a fresh server, say. On Cluster it primes every slot.
func (c *Client) PrimeRestartGuard(ctx context.Context) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if !c.cluster {
			p.SetNX(ctx, guardKey, 0, 0)
			return nil
		}
		for s := range uint16(16384) {
			p.SetNX(ctx, "{"+slotTag(s)+"}:reservation-restart-guard", 0, 0)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reservation: prime restart guard on %s: %w", c.addr, err)
	}
	return nil
}
