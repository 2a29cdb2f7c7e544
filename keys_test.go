package reservation

import (
	"testing"

	"github.com/redis-reservation/reservation/internal/hashslot"
)

func TestCompanionSameSlot(t *testing.T) {
	keys := []string{
		"reservation-job",
		"reservation-{user:1}:job",
		"reservation-}odd",
		"reservation-{}empty",
		"reservation-{unclosed",
		"reservation-a}b{c}d",
		"reservation-{x}}y",
		"reservation-with space\nand\x00binary",
	}
	for _, key := range keys {
		for _, suffix := range []string{fenceSuffix, channelSuffix} {
			c := companion(key, suffix)
			if got, want := slot(hashPart(c)), slot(hashPart(key)); got != want {
				t.Errorf("companion(%q) = %q in slot %d, want slot %d", key, c, got, want)
			}
			if c == key || c[0] != '{' {
				t.Errorf("companion(%q) = %q, want a distinct name starting with {", key, c)
			}
		}
		if got, want := slot(hashPart(guardKeyFor(key, true))), slot(hashPart(key)); got != want {
			t.Errorf("guard key of %q in slot %d, want %d", key, got, want)
		}
		// Built together, the names are the same.
		suffixes := []string{fenceSuffix, queueSuffix, leaseSuffix, channelSuffix, turnSuffix}
		names := make([]string, len(suffixes))
		companionsOf(key, names, suffixes...)
		for i, suffix := range suffixes {
			if want := companion(key, suffix); names[i] != want {
				t.Errorf("companionsOf(%q) has %q for %s, want %q", key, names[i], suffix, want)
			}
		}
	}
	if got, want := companion("reservation-job", "fence"), "{reservation-job}:fence"; got != want {
		t.Errorf("companion = %q, want %q", got, want)
	}
}

func TestCRC16(t *testing.T) {
	// Values from the Redis Cluster specification.
	if got, want := hashslot.CRC16("123456789"), uint16(0x31C3); got != want {
		t.Errorf("crc16 = %#x, want %#x", got, want)
	}
	if got, want := slot("foo"), uint16(12182); got != want {
		t.Errorf("slot(foo) = %d, want %d", got, want)
	}
}
