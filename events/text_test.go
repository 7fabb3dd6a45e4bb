package events

import "testing"

func TestUnsafeRune(t *testing.T) {
	for r, want := range map[rune]bool{
		0x00: true, '\t': true, '\n': true, 0x1b: true, 0x1f: true, ' ': false, '~': false,
		0x7f: true, 0x80: true, 0x85: true, 0x9b: true, 0x9f: true, 0xa0: false, 'é': false,
		0x061c: true, 0x061b: false, 0x200d: false, 0x200e: true, 0x200f: true, 0x2010: false,
		0x2027: false, 0x2028: true, 0x2029: true, 0x202a: true, 0x202e: true, 0x202f: false,
		0x2065: false, 0x2066: true, 0x2069: true, 0x206a: false, 0xfffd: false, 0x1f469: false,
	} {
		if got := UnsafeRune(r); got != want {
			t.Errorf("UnsafeRune(%U) = %v, want %v", r, got, want)
		}
	}
}
