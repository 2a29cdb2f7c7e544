// Package hashslot computes Redis Cluster hash slots, as the library (to
// keep a script's keys in one slot) and the test servers (to find a key's
// master) both need. go-redis has the same code, in an internal package.
package hashslot

import "strings"

// Slots is the number of hash slots of a Redis Cluster.
const Slots = 16384

// Part returns the part of key that Redis Cluster hashes: the content of
// the first {...} when it is not empty, else the whole key.
func Part(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// Of returns the hash slot of key.
func Of(key string) uint16 {
	return CRC16(Part(key)) % Slots
}

// CRC16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), bit by bit,
// the checksum Redis Cluster uses for slots.
func CRC16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
