package reservation

import (
	"context"
	_ "embed"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
)

var (
	//go:embed scripts/acquire.lua
	acquireLua string
	//go:embed scripts/renew.lua
	renewLua string
	//go:embed scripts/release.lua
	releaseLua string
	//go:embed scripts/force_release.lua
	forceReleaseLua string

	acquireScript      = redis.NewScript(acquireLua)
	renewScript        = redis.NewScript(renewLua)
	releaseScript      = redis.NewScript(releaseLua)
	forceReleaseScript = redis.NewScript(forceReleaseLua)
)

// isNoScript reports whether err is Redis's answer to EVALSHA of a script it
// does not have.
func isNoScript(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.HasPrefix(rerr.Error(), "NOSCRIPT")
}

// loadScripts loads every script on every node, for pipelines that send
// EVALSHA and cannot fall back to EVAL one command at a time.
func loadScripts(ctx context.Context, rdb redis.UniversalClient) error {
	// Not Script.Load: in a pipeline it would record an empty digest.
	sources := []string{acquireLua, renewLua, releaseLua, forceReleaseLua}
	load := func(ctx context.Context, c *redis.Client) error {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, src := range sources {
				p.ScriptLoad(ctx, src)
			}
			return nil
		})
		return err
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachShard(ctx, load)
	case *redis.Client:
		return load(ctx, c)
	default:
		for _, src := range sources {
			if err := rdb.ScriptLoad(ctx, src).Err(); err != nil {
				return err
			}
		}
		return nil
	}
}
