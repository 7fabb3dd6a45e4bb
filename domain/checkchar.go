package domain

// Alphabet is the passcode alphabet: digits, lower- and upper-case letters.
// A character's value is its index.
const Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// PasscodeLen is the length of a passcode: PasscodeLen-1 random characters
// and, for generations with a check character, the check character.
const PasscodeLen = 12

// checkModulus is the prime of the check: above the alphabet's 62 values, so
// that a difference between two characters is never 0 modulo it.
const checkModulus = 67

// The check is sum(w_i * v_i) - v_check ≡ 0 (mod 67) with w_i = i+1 for the
// eleven body characters, i.e. a weight of -1 on the check character. Every
// weight is non-zero and so is every difference of neighbouring weights (1,
// and 11-(-1) = 12), all below the prime: so every single substitution and
// every adjacent transposition (of different characters) changes the sum.

// charValue returns the value of an alphabet character, or -1.
func charValue(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 36
	}
	return -1
}

// CheckCharacter returns the check character of a body of PasscodeLen-1
// alphabet characters; ok is false when the body is not that, or when the
// check value (62 to 66) has no character: the generator then draws again.
func CheckCharacter(body string) (c byte, ok bool) {
	if len(body) != PasscodeLen-1 {
		return 0, false
	}
	sum := 0
	for i := 0; i < len(body); i++ {
		v := charValue(body[i])
		if v < 0 {
			return 0, false
		}
		sum += (i + 1) * v
	}
	sum %= checkModulus
	if sum >= len(Alphabet) {
		return 0, false
	}
	return Alphabet[sum], true
}

// ValidCheck reports whether candidate is PasscodeLen alphabet characters
// whose last one is the check character of the others.
func ValidCheck(candidate string) bool {
	if len(candidate) != PasscodeLen {
		return false
	}
	c, ok := CheckCharacter(candidate[:PasscodeLen-1])
	return ok && c == candidate[PasscodeLen-1]
}

// Mistyped reports whether a candidate, typed for a generation with a check
// character, is plainly a typo rather than a guess: it has the passcode's
// length (in characters) and fails the check. Such a candidate can never be
// the passcode, which always passes it.
func Mistyped(candidate string) bool {
	n := 0
	for range candidate {
		n++
	}
	return n == PasscodeLen && !ValidCheck(candidate)
}

// Guess returns a passcode of PasscodeLen characters that passes the check
// and differs from each of not: a wrong passcode that is a guess, not a
// typo. n picks among them. It is for tests and tooling that need one.
func Guess(n int, not ...string) string {
	for i := n; ; i++ {
		body := []byte("guess000000")
		for j, v := len(body)-1, i; j >= 5 && v > 0; j, v = j-1, v/len(Alphabet) {
			body[j] = Alphabet[v%len(Alphabet)]
		}
		c, ok := CheckCharacter(string(body))
		if !ok {
			continue
		}
		g := string(body) + string(c)
		taken := false
		for _, s := range not {
			taken = taken || s == g
		}
		if !taken {
			return g
		}
	}
}
