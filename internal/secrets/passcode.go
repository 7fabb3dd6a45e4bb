package secrets

import (
	"errors"
	"fmt"
	"io"

	"github.com/enrollgate/enrollgate/domain"
)

// Alphabet is the passcode alphabet: digits, lower- and upper-case letters.
const Alphabet = domain.Alphabet

// PasscodeLen is the length of a generated passcode, its check character
// included.
const PasscodeLen = domain.PasscodeLen

// bodyLen is the number of random characters; the last one is the check
// character over them (domain.CheckCharacter).
const bodyLen = PasscodeLen - 1

// rejectFrom is the smallest byte value that is rejected: 248 = 4*62 is the
// largest multiple of 62 not above 256, so that v%62 over [0, 248) is uniform.
// Taking v%62 over all of [0, 256) would make the first 8 characters 25% more
// likely than the others.
const rejectFrom = 4 * len(Alphabet)

// maxDraws bounds the bytes read for one passcode. A uniform source rejects
// 8/256 of its bytes, and 5 bodies in 67 have no check character, so needing
// more than 4096 bytes means the source is broken, not unlucky.
const maxDraws = 4096

// ErrBadRandomSource is returned when the random source keeps yielding bytes
// that must be rejected.
var ErrBadRandomSource = errors.New("random source yields only rejected bytes")

// GeneratePasscode draws a passcode from r (crypto/rand.Reader in
// production): bodyLen characters of Alphabet by rejection sampling, then
// their check character. A body whose check value has no character is drawn
// again whole, never adjusted: each valid passcode has exactly one body, so
// the result is uniform over the valid passcodes.
func GeneratePasscode(r io.Reader) (string, error) {
	var out [PasscodeLen]byte
	// Draw a little more than needed so that one read usually suffices.
	buf := make([]byte, bodyLen+4)
	drawn := 0
	for {
		n := 0
		for n < bodyLen {
			if drawn >= maxDraws {
				return "", ErrBadRandomSource
			}
			if _, err := io.ReadFull(r, buf); err != nil {
				return "", fmt.Errorf("read random source: %w", err)
			}
			drawn += len(buf)
			for _, v := range buf {
				if int(v) >= rejectFrom {
					continue
				}
				out[n] = Alphabet[int(v)%len(Alphabet)]
				n++
				if n == bodyLen {
					break
				}
			}
		}
		if c, ok := domain.CheckCharacter(string(out[:bodyLen])); ok {
			out[bodyLen] = c
			return string(out[:]), nil
		}
	}
}
