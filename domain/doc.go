// Package domain holds the Passcode aggregate of one site and its lockout
// policy.
//
// It is pure: no I/O, no clock, no randomness. Time, IDs and the keyed hashes
// of secrets are passed in. Exported methods decide and return the event
// payload to append (or an error); the unexported apply folds a stored event
// into the state and cannot fail. The aggregate never sees a passcode in plain
// text, only its HMAC.
package domain
