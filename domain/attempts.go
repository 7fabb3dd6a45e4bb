package domain

import (
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// A site remembers its last attemptLogSize attempt IDs, and beyond those
// every attempt of the last attemptMemory, up to attemptLogMax: a retry may
// come late (a client's reconnect buffer sends a request again when its
// connection is back, after the frontend retried elsewhere), and a busy site
// sees more than attemptLogSize attempts in that time. Most sites hold one
// or two records.
const (
	attemptLogSize = 64
	attemptMemory  = 10 * time.Minute
	attemptLogMax  = 4096
)

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
	// at is when the attempt was stored (unix nanoseconds).
	at int64
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

// attemptLog remembers recent attempt IDs, oldest first. It is a slice
// scanned linearly, newest first (a retry is almost always recent), rather
// than a map: most sites hold one or two records, for which a map costs
// several hundred bytes. It is allocated on the first attempt.
type attemptLog []attemptRecord

// add records an attempt; a known ID keeps its place in the order and takes
// the new record. Records beyond attemptLogSize that are older than
// attemptMemory are dropped in batches, every attemptLogSize adds, so that a
// busy site pays one copy per batch rather than one per attempt.
func (l *attemptLog) add(r attemptRecord) {
	if r.id == "" {
		return
	}
	recs := *l
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].id == r.id {
			recs[i] = r
			return
		}
	}
	if n := len(recs); n >= attemptLogSize && n%attemptLogSize == 0 {
		cutoff := r.at - int64(attemptMemory)
		drop := 0
		for drop < n-attemptLogSize+1 && (recs[drop].at < cutoff || n-drop > attemptLogMax-attemptLogSize) {
			drop++
		}
		if drop > 0 {
			kept := copy(recs, recs[drop:])
			clear(recs[kept:])
			recs = recs[:kept]
		}
	}
	*l = append(recs, r)
}

func (l attemptLog) lookup(id string) (attemptRecord, bool) {
	for i := len(l) - 1; i >= 0; i-- {
		if l[i].id == id {
			return l[i], true
		}
	}
	return attemptRecord{}, false
}
