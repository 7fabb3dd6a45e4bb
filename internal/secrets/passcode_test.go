package secrets

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
)

// chiSquareCritical is the critical value of the chi-square distribution with
// 61 degrees of freedom (62 characters) at p = 1e-6, computed from the
// regularized upper incomplete gamma function Q(30.5, x/2) = 1e-6. A uniform
// generator exceeds it once in a million runs; a generator with modulo bias
// (v%62 over all 256 byte values) scores about 4,000 over 620,000 characters.
const chiSquareCritical = 128.52

func TestGeneratePasscodeShape(t *testing.T) {
	for range 1000 {
		p, err := GeneratePasscode(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != PasscodeLen {
			t.Fatalf("length %d, want %d", len(p), PasscodeLen)
		}
		for _, c := range p {
			if !strings.ContainsRune(Alphabet, c) {
				t.Fatalf("character %q outside the alphabet", c)
			}
		}
	}
	if len(Alphabet) != 62 {
		t.Fatalf("alphabet has %d characters, want 62", len(Alphabet))
	}
}

// counts draws n characters from gen and counts each alphabet character.
func counts(t *testing.T, n int, gen func() (string, error)) map[byte]int {
	t.Helper()
	c := make(map[byte]int, 62)
	for drawn := 0; drawn < n; {
		p, err := gen()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(p) && drawn < n; i++ {
			c[p[i]]++
			drawn++
		}
	}
	return c
}

func chiSquare(c map[byte]int, n int) float64 {
	expected := float64(n) / float64(len(Alphabet))
	var x float64
	for i := range len(Alphabet) {
		d := float64(c[Alphabet[i]]) - expected
		x += d * d / expected
	}
	return x
}

func TestGeneratePasscodeUniform(t *testing.T) {
	const n = 620_000 // 10,000 expected per character
	c := counts(t, n, func() (string, error) { return GeneratePasscode(rand.Reader) })
	for i := range len(Alphabet) {
		if c[Alphabet[i]] == 0 {
			t.Fatalf("character %q never drawn", Alphabet[i])
		}
	}
	if len(c) != len(Alphabet) {
		t.Fatalf("%d distinct characters, want %d", len(c), len(Alphabet))
	}
	x := chiSquare(c, n)
	t.Logf("chi-square = %.1f (df 61, critical %.2f at p=1e-6)", x, chiSquareCritical)
	if x > chiSquareCritical {
		t.Fatalf("chi-square %.1f > %.2f: the distribution is not flat", x, chiSquareCritical)
	}
}

// TestChiSquareDetectsModuloBias shows that the flatness test can fail: the
// naive v%62 over every byte is rejected.
func TestChiSquareDetectsModuloBias(t *testing.T) {
	const n = 620_000
	naive := func() (string, error) {
		var b [PasscodeLen]byte
		if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
			return "", err
		}
		for i, v := range b {
			b[i] = Alphabet[int(v)%len(Alphabet)]
		}
		return string(b[:]), nil
	}
	if x := chiSquare(counts(t, n, naive), n); x <= chiSquareCritical {
		t.Fatalf("biased generator scored %.1f, not above %.2f", x, chiSquareCritical)
	}
}

// biasedReader yields `high` bytes of values >= 248 before handing over to
// the rest.
type biasedReader struct {
	high int
	rest io.Reader
}

func (r *biasedReader) Read(p []byte) (int, error) {
	if r.high <= 0 {
		return r.rest.Read(p)
	}
	n := min(len(p), r.high)
	for i := range n {
		p[i] = byte(248 + i%8)
	}
	r.high -= n
	return n, nil
}

func TestGeneratePasscodeRejectsHighBytes(t *testing.T) {
	p, err := GeneratePasscode(&biasedReader{high: 1000, rest: rand.Reader})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range p {
		if !strings.ContainsRune(Alphabet, c) {
			t.Fatalf("character %q outside the alphabet", c)
		}
	}
	// 248..255 would map to the first 8 characters under a plain modulo;
	// with only those bytes and then a known tail, the result is the tail's.
	tail := bytes.Repeat([]byte{61 + 62*3}, 64) // 247: the last accepted value, 'Z'
	p, err = GeneratePasscode(io.MultiReader(bytes.NewReader(bytes.Repeat([]byte{255, 250, 248}, 100)), bytes.NewReader(tail)))
	if err != nil {
		t.Fatal(err)
	}
	if p != strings.Repeat("Z", PasscodeLen) {
		t.Fatalf("got %q, want only the accepted tail's characters", p)
	}
}

func TestGeneratePasscodeBrokenSource(t *testing.T) {
	_, err := GeneratePasscode(&biasedReader{high: 1 << 30})
	if !errors.Is(err, ErrBadRandomSource) {
		t.Fatalf("err = %v, want ErrBadRandomSource", err)
	}
	_, err = GeneratePasscode(bytes.NewReader([]byte{1, 2, 3}))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want a wrapped read error", err)
	}
}
