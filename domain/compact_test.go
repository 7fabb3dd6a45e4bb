package domain

import (
	"crypto/sha256"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/wirebin"
)

// White-box tests of the compact state: what the black-box tests cannot see.

var ct0 = time.Date(2024, 6, 1, 9, 0, 0, 0, time.UTC)

func TestAttemptLogKeepsRecentIDs(t *testing.T) {
	var l attemptLog
	if l != nil {
		t.Fatal("a new log is allocated")
	}
	at := func(minutes int) int64 { return ct0.Add(time.Duration(minutes) * time.Minute).UnixNano() }
	id := func(i int) string { return "id-" + strconv.Itoa(i) }

	// A burst within attemptMemory: every ID is remembered, beyond
	// attemptLogSize (a late retry of a busy site's attempt is still known).
	for i := range 3 * attemptLogSize {
		l.add(attemptRecord{id: id(i), at: at(0)})
	}
	l.add(attemptRecord{at: at(0)}) // no ID: not recorded
	for i := range 3 * attemptLogSize {
		if _, ok := l.lookup(id(i)); !ok {
			t.Fatalf("%s forgotten within the memory", id(i))
		}
	}
	// A known ID takes the new record but keeps its place.
	l.add(attemptRecord{id: id(0), ok: true, at: at(0)})
	if r, _ := l.lookup(id(0)); !r.ok || l[0].id != id(0) {
		t.Fatal("the known ID did not take the new record in its place")
	}

	// Later attempts: what is older than attemptMemory goes, in batches,
	// but the last attemptLogSize stay whatever their age.
	for i := range 2 * attemptLogSize {
		l.add(attemptRecord{id: "late-" + strconv.Itoa(i), at: at(60 + i)})
	}
	if _, ok := l.lookup(id(0)); ok {
		t.Fatal("an attempt older than the memory is still remembered")
	}
	if len(l) > 2*attemptLogSize || len(l) < attemptLogSize {
		t.Fatalf("log holds %d after the old ones aged out", len(l))
	}
	for i := range attemptLogSize {
		if _, ok := l.lookup("late-" + strconv.Itoa(2*attemptLogSize-1-i)); !ok {
			t.Fatalf("one of the last %d attempts was dropped", attemptLogSize)
		}
	}

	// A flood within the memory is capped.
	var f attemptLog
	for i := range attemptLogMax + 3*attemptLogSize {
		f.add(attemptRecord{id: id(i), at: at(0)})
	}
	if len(f) > attemptLogMax {
		t.Fatalf("log holds %d, above the cap %d", len(f), attemptLogMax)
	}
	if _, ok := f.lookup(id(attemptLogMax + 3*attemptLogSize - 1)); !ok {
		t.Fatal("the newest attempt was dropped")
	}
	if _, ok := f.lookup(id(0)); ok {
		t.Fatal("the oldest attempt survived the cap")
	}
}

func failedAt(p *Passcode, seq uint64, at time.Time, s events.Source) {
	p.Replay(events.Record{Seq: seq, Event: events.Event{ID: "e", Site: "s", OccurredAt: at,
		Data: events.EnrollmentAttemptFailed{PasscodeID: "g1", Source: s, FailedAttempts: 1, MaxFailedAttempts: 100,
			FailureWindow: events.Duration(time.Hour)}}})
}

func TestSourcesAreSharedAndForgotten(t *testing.T) {
	p := New("s", Policy{MaxFailedAttempts: 100, FailureWindow: time.Hour, MaxFailedPerSource: 50, SourceWindow: 15 * time.Minute})
	p.Replay(events.Record{Seq: 1, Event: events.Event{ID: "e", Site: "s", OccurredAt: ct0,
		Data: events.PasscodeGenerated{PasscodeID: "g1", Hash: []byte("h"), HashKeyID: "k", Sealed: []byte("x"), SealKeyID: "k"}}})
	a, b := events.Source{IP: "10.0.0.1", DeviceID: "d1"}, events.Source{IP: "10.0.0.2"}
	failedAt(p, 2, ct0.Add(time.Minute), a)
	failedAt(p, 3, ct0.Add(2*time.Minute), b)
	failedAt(p, 4, ct0.Add(3*time.Minute), a)
	fs := p.log.failures
	if len(fs) != 3 || fs[0].src != fs[2].src || fs[0].src == fs[1].src {
		t.Fatalf("failures of one source do not share it: %+v", fs)
	}
	if fs[0].src.keys != (sourceKeys{"ip:10.0.0.1", "device:d1"}) || fs[1].src.keys != (sourceKeys{"ip:10.0.0.2"}) {
		t.Fatalf("keys %v %v", fs[0].src.keys, fs[1].src.keys)
	}
	if i, ok := p.log.sourceIndex("ip:10.0.0.1"); len(p.log.sources) != 3 || !ok || len(p.log.sources[i].times) != 2 {
		t.Fatalf("sources %+v, want three keys, two failures of ip:10.0.0.1", p.log.sources)
	}
	if !slices.IsSortedFunc(p.log.sources, func(a, b sourceTimes) int { return strings.Compare(a.key, b.key) }) {
		t.Fatalf("sources %+v, not sorted by key", p.log.sources)
	}
	// A stored log with its keys out of order is refused: lookups need them sorted.
	l := p.log
	l.sources = []sourceTimes{l.sources[2], l.sources[0], l.sources[1]}
	if r := wirebin.NewReader(l.AppendBinary(nil)); DecodeFailureLog(r).sources != nil || r.Err() == nil {
		t.Fatal("decoded a log with its source keys out of order")
	}
	// A failure after the source window forgets the keys that aged out.
	failedAt(p, 5, ct0.Add(time.Hour), b)
	if s := p.log.sources; len(s) != 1 || s[0].key != "ip:10.0.0.2" || len(s[0].times) != 1 {
		t.Fatalf("sources %+v, want only ip:10.0.0.2 with its last failure", s)
	}
}

// A digest of another length than the one Verify makes (an event written by
// other tooling) never makes a retry; the same bytes cut to length do.
func TestAttemptDigestLength(t *testing.T) {
	mac := []byte("wrong")
	h := sha256.New()
	h.Write([]byte("att\x00"))
	h.Write(mac)
	full := h.Sum(nil)
	for _, tc := range []struct {
		dg     []byte
		repeat bool
	}{{full, false}, {full[:digestLen], true}, {nil, false}} {
		p := New("s", DefaultPolicy())
		p.Replay(events.Record{Seq: 1, Event: events.Event{ID: "e", Site: "s", OccurredAt: ct0,
			Data: events.PasscodeGenerated{PasscodeID: "g1", Hash: []byte("h"), HashKeyID: "k", Sealed: []byte("x"), SealKeyID: "k"}}})
		p.Replay(events.Record{Seq: 2, Event: events.Event{ID: "e", Site: "s", OccurredAt: ct0,
			Data: events.EnrollmentAttemptFailed{PasscodeID: "g1", AttemptID: "att", AttemptDigest: tc.dg,
				FailedAttempts: 1, MaxFailedAttempts: 10, FailureWindow: events.Duration(time.Hour)}}})
		_, payload := p.Verify(ct0.Add(time.Second), Attempt{ID: "att", Source: events.Source{IP: "10.0.0.9"}, CandidateMAC: mac})
		if repeat := payload == nil; repeat != tc.repeat {
			t.Errorf("digest of %d bytes: repeat = %v, want %v", len(tc.dg), repeat, tc.repeat)
		}
	}
}

// Times outside what unix nanoseconds hold still compare in order.
func TestUnixNanoSaturates(t *testing.T) {
	if got := unixNano(time.Time{}); got != unixNano(time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)) || got >= unixNano(ct0) {
		t.Fatalf("zero time = %d", got)
	}
	if far := unixNano(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); far <= unixNano(ct0) {
		t.Fatalf("year 3000 = %d, before %d", far, unixNano(ct0))
	}
	if got := unixTime(unixNano(ct0)); !got.Equal(ct0) || got.Location() != time.UTC {
		t.Fatalf("round trip = %v", got)
	}
}
