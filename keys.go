package reservation

import (
	"strconv"
	"strings"
	"sync"

	"github.com/redis-reservation/reservation/internal/hashslot"
)

// Companion keys. Every script touches the reservation key and companions
// that hash to the same Redis Cluster slot, so that it runs on one node:
//
//   - the fencing key, which holds the last token issued for the resource;
//   - the restart-guard marker, one per slot on Cluster and one in all on a
//     single server;
//   - the release channel (not a key, but named the same way so that it can
//     move to sharded Pub/Sub);
//   - the queue of waiters and their leases (sorted sets), and the turn
//     channel that tells the queue's head.
//
// Companion names start with "{", so they never collide with reservation
// keys as long as the prefix does not start with "{".

const (
	fenceSuffix   = "fence"
	channelSuffix = "released"
	// queueSuffix, leaseSuffix and turnSuffix name the queue of waiters
	// (holder values by arrival), their leases (by expiry) and the
	// channel where the queue's new head is told its turn came.
	queueSuffix = "queue"
	leaseSuffix = "leases"
	turnSuffix  = "turn"
	// forcedSuffix names the record a quorum's force release leaves on
	// each server, so that the holder does not take its part there again
	// (see Client.retake).
	forcedSuffix = "forced"
	// guardKey is the restart-guard marker on a single server.
	guardKey = "{reservation}:restart-guard"
)

// hashPart returns the part of key that Redis Cluster hashes: the content of
// the first {...} when it is not empty, else the whole key.
func hashPart(key string) string { return hashslot.Part(key) }

// companion returns a name for suffix in the same hash slot as key. For a
// key with no hash tag and no "}" it is "{key}:suffix", which Redis hashes
// exactly like key. Otherwise the hashed part is put in braces again, or,
// when it contains a "}" and so cannot be, a short tag of the same slot.
func companion(key, suffix string) string {
	h := hashPart(key)
	switch {
	case h == key && !strings.Contains(key, "}"):
		return "{" + key + "}:" + suffix
	case !strings.Contains(h, "}"):
		return "{" + h + "}:" + suffix + ":" + key
	default:
		return "{" + slotTag(slot(h)) + "}:" + suffix + ":" + key
	}
}

// companionsOf sets out[i] to companion(key, suffixes[i]) for each suffix,
// all built in one allocation, which they share.
func companionsOf(key string, out []string, suffixes ...string) {
	h := hashPart(key)
	tag, tail := key, "" // "{tag}:suffix" and ":tail" after it, if any
	switch {
	case h == key && !strings.Contains(key, "}"):
	case !strings.Contains(h, "}"):
		tag, tail = h, key
	default:
		tag, tail = slotTag(slot(h)), key
	}
	size := func(suffix string) int {
		n := len(tag) + len("{}:") + len(suffix)
		if tail != "" {
			n += len(":") + len(tail)
		}
		return n
	}
	var b strings.Builder
	total := 0
	for _, s := range suffixes {
		total += size(s)
	}
	b.Grow(total)
	for _, s := range suffixes {
		b.WriteString("{")
		b.WriteString(tag)
		b.WriteString("}:")
		b.WriteString(s)
		if tail != "" {
			b.WriteString(":")
			b.WriteString(tail)
		}
	}
	all, at := b.String(), 0
	for i, s := range suffixes {
		out[i] = all[at : at+size(s)]
		at += size(s)
	}
}

// slot returns the Redis Cluster hash slot of a hashed part.
func slot(h string) uint16 {
	return hashslot.CRC16(h) % hashslot.Slots
}

var (
	slotTagsOnce sync.Once
	slotTags     []string
)

// slotTag returns a short string without braces that hashes to slot s.
func slotTag(s uint16) string {
	slotTagsOnce.Do(func() {
		slotTags = make([]string, 16384)
		for n, found := 0, 0; found < len(slotTags); n++ {
			tag := strconv.Itoa(n)
			if s := slot(tag); slotTags[s] == "" {
				slotTags[s] = tag
				found++
			}
		}
	})
	return slotTags[s]
}

// guardKeyFor returns the restart-guard marker for key: one per slot on
// Cluster, so that the acquire script stays in one slot, else one in all.
func guardKeyFor(key string, cluster bool) string {
	if !cluster {
		return guardKey
	}
	return "{" + slotTag(slot(hashPart(key))) + "}:reservation-restart-guard"
}

// fenceLifetime is how long the fencing key outlives an acquisition. Its
// loss cannot make tokens go backwards (the next one is at least the
// server's time in microseconds); it only needs to outlive one microsecond.
func fenceLifetime(ttlMillis int64) int64 {
	return max(2*ttlMillis, 60_000)
}

// permitSuffix names the keys of a semaphore's permits: permit i of the
// semaphore whose marker is key is companion(key, "permit-<i>"), a
// reservation key of its own in the marker's hash slot.
const permitSuffix = "permit-"

// semaphorePrefix starts the value of a semaphore's marker, which its
// limit ends: "semaphore:3".
const semaphorePrefix = "semaphore:"

// permitKey returns the key of permit i (from 1) of the semaphore key.
func permitKey(key string, i int) string {
	return companion(key, permitSuffix+strconv.Itoa(i))
}

// permitKeys returns the keys of the n permits of the semaphore key.
func permitKeys(key string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = permitKey(key, i+1)
	}
	return keys
}

// permitOf returns the semaphore key whose permit key is, and whether key
// is a permit's key at all.
func permitOf(key string) (string, bool) {
	if !strings.HasPrefix(key, "{") {
		return "", false
	}
	j := strings.Index(key, "}:"+permitSuffix)
	if j < 0 {
		return "", false
	}
	rest := key[j+2+len(permitSuffix):]
	num, base, tagged := strings.Cut(rest, ":")
	if !tagged {
		base = key[1:j]
	}
	i, err := strconv.Atoi(num)
	if err != nil || i < 1 || permitKey(base, i) != key {
		return "", false
	}
	return base, true
}

// semaphoreOf returns the semaphore key of a permit's key, else key: the
// key whose companions (queue, channels) a holding of key uses.
func semaphoreOf(key string) string {
	if base, ok := permitOf(key); ok {
		return base
	}
	return key
}
