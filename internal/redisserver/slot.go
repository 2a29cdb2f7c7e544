package redisserver

import "github.com/redis-reservation/reservation/internal/hashslot"

// Slots is the number of hash slots of a Redis Cluster.
const Slots = hashslot.Slots

// SlotOf returns the hash slot of key as Redis Cluster computes it: CRC16
// (XMODEM) of the key modulo 16384, or of its hash tag, the part between
// the first "{" and the first "}" after it, when that is not empty.
func SlotOf(key string) int {
	return int(hashslot.Of(key))
}
