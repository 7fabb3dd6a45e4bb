package domain

import "github.com/enrollgate/enrollgate/events"

// attemptLogSize is how many recent attempt IDs a site remembers. A frontend
// retries within seconds, so a short memory is enough; it bounds the memory of
// a site that sees many enrollments.
const attemptLogSize = 64

// digestLen is the length of an attempt digest (see digest).
const digestLen = 16

type attemptRecord struct {
	id         string
	passcodeID string
	digest     [digestLen]byte
	// hasDigest is false when the event carried no digest of digestLen
	// bytes: such a record never matches a retry.
	hasDigest bool
	ok        bool
	// excused is the outcome of an excused wrong attempt (a byte, since a
	// site keeps up to attemptLogSize records); notExcused for a counted one.
	excused excusedCode
}

type excusedCode uint8

const (
	notExcused excusedCode = iota
	excusedOutdated
	excusedMistyped
)

func excusedCodeOf(o events.ExcusedOutcome) excusedCode {
	if o == events.OutcomeOutdated {
		return excusedOutdated
	}
	return excusedMistyped
}

// wrongReason is the verdict of a recorded wrong attempt.
func (r attemptRecord) wrongReason() Reason {
	switch r.excused {
	case excusedOutdated:
		return ReasonOutdated
	case excusedMistyped:
		return ReasonMistyped
	}
	return ReasonWrongPasscode
}

// attemptLog remembers the most recent attempt IDs, oldest dropped first. It
// is a slice scanned linearly rather than a map: at most attemptLogSize
// entries, and most sites hold one or two, for which a map costs several
// hundred bytes. It is allocated on the first attempt.
type attemptLog []attemptRecord

// add records an attempt; a known ID keeps its place in the order and takes
// the new record.
func (l *attemptLog) add(r attemptRecord) {
	if r.id == "" {
		return
	}
	recs := *l
	for i := range recs {
		if recs[i].id == r.id {
			recs[i] = r
			return
		}
	}
	if len(recs) < attemptLogSize {
		*l = append(recs, r)
		return
	}
	copy(recs, recs[1:])
	recs[len(recs)-1] = r
}

func (l attemptLog) lookup(id string) (attemptRecord, bool) {
	for i := range l {
		if l[i].id == id {
			return l[i], true
		}
	}
	return attemptRecord{}, false
}
