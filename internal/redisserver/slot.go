package redisserver

import "strings"

// Slots is the number of hash slots of a Redis Cluster.
const Slots = 16384

// SlotOf returns the hash slot of key as Redis Cluster computes it: CRC16
// (XMODEM) of the key modulo 16384, or of its hash tag, the part between
// the first "{" and the first "}" after it, when that is not empty.
func SlotOf(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key)) % Slots
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), bit by bit.
func crc16(s string) uint16 {
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
