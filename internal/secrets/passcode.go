package secrets

import (
	"errors"
	"fmt"
	"io"
)

// Alphabet is the passcode alphabet: digits, lower- and upper-case letters.
const Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// PasscodeLen is the length of a generated passcode.
const PasscodeLen = 12

// rejectFrom is the smallest byte value that is rejected: 248 = 4*62 is the
// largest multiple of 62 not above 256, so that v%62 over [0, 248) is uniform.
// Taking v%62 over all of [0, 256) would make the first 8 characters 25% more
// likely than the others.
const rejectFrom = 4 * len(Alphabet)

// maxDraws bounds the bytes read for one passcode. A uniform source rejects
// 8/256 of its bytes, so needing more than 4096 bytes for 12 characters means
// the source is broken, not unlucky (probability below 1e-5000).
const maxDraws = 4096

// ErrBadRandomSource is returned when the random source keeps yielding bytes
// that must be rejected.
var ErrBadRandomSource = errors.New("random source yields only rejected bytes")

// GeneratePasscode draws a passcode of PasscodeLen characters of Alphabet from
// r (crypto/rand.Reader in production) by rejection sampling.
func GeneratePasscode(r io.Reader) (string, error) {
	var out [PasscodeLen]byte
	// Draw a little more than needed so that one read usually suffices.
	buf := make([]byte, PasscodeLen+4)
	n, drawn := 0, 0
	for n < PasscodeLen {
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
			if n == PasscodeLen {
				break
			}
		}
	}
	return string(out[:]), nil
}
