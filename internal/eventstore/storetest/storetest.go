package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
)

// Run runs the contract suite. newStore returns a store for one subtest; the
// subtests use distinct sites, so stores may share a backend.
func Run(t *testing.T, newStore func(t *testing.T) handlers.EventStore) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s handlers.EventStore, prefix string)
	}{
		{"RoundTrip", testRoundTrip},
		{"EmptySite", testEmptySite},
		{"Conflict", testConflict},
		{"Dedup", testDedup},
		{"SiteIsolation", testSiteIsolation},
		{"FirstAppend", testFirstAppend},
		{"ConcurrentAppendOneWins", testConcurrentAppend},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t), "") })
	}
}

// Forge stores on the site's subject a message that the service did not
// write (its store must not take it for an event), and returns its stream
// sequence.
type Forge func(t *testing.T, site events.Site) uint64

// RunForged runs the part of the contract about messages on a site's
// subject that are not its events: Load leaves them out, ending with a gap
// record (a sequence and no event data) when they are the last ones, and the
// position they occupy is what the next Append expects.
func RunForged(t *testing.T, prefix string, newStore func(t *testing.T) handlers.EventStore, forge Forge) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s handlers.EventStore, prefix string, forge Forge)
	}{
		{"ForgedTail", testForgedTail},
		{"ForgedOnly", testForgedOnly},
		{"ForgedBetween", testForgedBetween},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t), prefix, forge) })
	}
}

// Gap is the record Load ends with after messages that are not events.
func Gap(seq uint64) events.Record { return events.Record{Seq: seq} }

func testForgedTail(t *testing.T, s handlers.EventStore, prefix string, forge Forge) {
	b := NewEvents(prefix + "forged-tail")
	want := Append(t, s, b, 0, 3)
	f := forge(t, b.Site)
	Equal(t, Load(t, s, b.Site, 0), append(want[:3:3], Gap(f)))
	Equal(t, Load(t, s, b.Site, want[2].Seq), []events.Record{Gap(f)})
	Equal(t, Load(t, s, b.Site, f), nil)
	if got := lastSeq(t, s, b.Site); got != f {
		t.Fatalf("last seq %d, want the forged message's %d", got, f)
	}
	// The next append expects the forged message's position, not the last event's.
	if _, err := s.Append(context.Background(), b.Next(), want[2].Seq); !errors.Is(err, handlers.ErrConflict) {
		t.Fatalf("append expecting the last event %d before forged %d: got %v, want ErrConflict", want[2].Seq, f, err)
	}
	next := Append(t, s, b, f, 1)
	Equal(t, Load(t, s, b.Site, 0), append(want[:3:3], next...))
	Equal(t, Load(t, s, b.Site, want[2].Seq), next)
}

func testForgedOnly(t *testing.T, s handlers.EventStore, prefix string, forge Forge) {
	b := NewEvents(prefix + "forged-only")
	f := forge(t, b.Site)
	Equal(t, Load(t, s, b.Site, 0), []events.Record{Gap(f)})
	if _, err := s.Append(context.Background(), b.Next(), 0); !errors.Is(err, handlers.ErrConflict) {
		t.Fatalf("append expecting an empty site after forged %d: got %v, want ErrConflict", f, err)
	}
	first := Append(t, s, b, f, 1)
	Equal(t, Load(t, s, b.Site, 0), first)
}

func testForgedBetween(t *testing.T, s handlers.EventStore, prefix string, forge Forge) {
	b := NewEvents(prefix + "forged-between")
	want := Append(t, s, b, 0, 1)
	forge(t, b.Site)
	f := forge(t, b.Site)
	want = append(want, Append(t, s, b, f, 2)...)
	Equal(t, Load(t, s, b.Site, 0), want)
	Equal(t, Load(t, s, b.Site, want[0].Seq), want[1:])
}

// Events builds valid events of every type for one site, with fixed UTC
// times so that decoded events compare equal field for field.
type Events struct {
	Site events.Site
	ids  *handlers.ULIDs
	at   time.Time
	n    int
}

// NewEvents returns a builder of events for site.
func NewEvents(site string) *Events {
	return &Events{Site: events.Site(site), ids: handlers.NewULIDs(), at: time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)}
}

// Next returns a new event, cycling through the event types.
func (b *Events) Next() events.Event {
	b.n++
	at := b.at.Add(time.Duration(b.n) * time.Second)
	first := at.Add(-time.Minute)
	admin := events.Actor{Kind: events.ActorAdmin, ID: "alice@acme.example"}
	device := events.Actor{Kind: events.ActorDevice, ID: fmt.Sprintf("dev-%d", b.n)}
	src := events.Source{IP: fmt.Sprintf("10.0.0.%d", b.n%250), DeviceID: device.ID, Platform: "ios", UserAgent: "ua"}
	var actor events.Actor
	var data events.Payload
	switch b.n % 6 {
	case 1:
		actor, data = admin, events.PasscodeGenerated{PasscodeID: fmt.Sprintf("gen-%d", b.n), Hash: []byte{1, 2, 3, byte(b.n)},
			HashKeyID: "mac-1", Sealed: []byte{9, 8, 7, byte(b.n)}, SealKeyID: "seal-1"}
	case 2:
		actor, data = device, events.EnrollmentAttemptFailed{PasscodeID: "gen-1", AttemptID: fmt.Sprintf("att-%d", b.n),
			AttemptDigest: []byte{4, 5}, Source: src, FailedAttempts: 1, MaxFailedAttempts: 10, FailureWindow: events.Duration(time.Hour)}
	case 3:
		actor, data = device, events.EnrollmentAttemptSucceeded{PasscodeID: "gen-1", AttemptID: fmt.Sprintf("att-%d", b.n),
			AttemptDigest: []byte{6}, Source: src}
	case 4:
		actor, data = admin, events.PasscodeRevealed{PasscodeID: "gen-1"}
	case 5:
		actor, data = admin, events.LockoutPolicyChanged{MaxFailedAttempts: 5, FailureWindow: events.Duration(30 * time.Minute),
			PasscodeID: "gen-1", FailedAttempts: 1}
	default:
		actor, data = events.Actor{Kind: events.ActorSystem, ID: "lockout"}, events.PasscodeDisabled{PasscodeID: "gen-1",
			Reason: events.DisableLockout, FailedAttempts: 10, MaxFailedAttempts: 10, FailureWindow: events.Duration(time.Hour),
			FirstFailedAt: &first, LastFailedAt: &at, RecentSources: []events.Source{src}}
	}
	return events.Event{ID: b.ids.NewID(), Site: b.Site, OccurredAt: at, Actor: actor, Data: data}
}

// Append appends n events to the site, each with the right expectation
// starting from after, and returns them as records.
func Append(t testing.TB, s handlers.EventStore, b *Events, after uint64, n int) []events.Record {
	t.Helper()
	var recs []events.Record
	for range n {
		e := b.Next()
		seq, err := s.Append(context.Background(), e, after)
		if err != nil {
			t.Fatalf("append %s after %d: %v", e.Type(), after, err)
		}
		if seq <= after {
			t.Fatalf("append after %d returned seq %d", after, seq)
		}
		recs = append(recs, events.Record{Seq: seq, Event: e})
		after = seq
	}
	return recs
}

// Load loads and fails the test on error.
func Load(t testing.TB, s handlers.EventStore, site events.Site, after uint64) []events.Record {
	t.Helper()
	recs, err := s.Load(context.Background(), site, after)
	if err != nil {
		t.Fatalf("load %s after %d: %v", site, after, err)
	}
	return recs
}

// Equal fails the test unless got and want hold the same records, field for
// field.
func Equal(t testing.TB, got, want []events.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d: %v", len(got), len(want), seqs(got))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.Event.ID != w.Event.ID || g.Event.Site != w.Event.Site || !g.Event.OccurredAt.Equal(w.Event.OccurredAt) ||
			g.Event.Actor != w.Event.Actor || !reflect.DeepEqual(g.Event.Data, w.Event.Data) {
			t.Fatalf("record %d:\n got %d %+v\nwant %d %+v", i, g.Seq, g.Event, w.Seq, w.Event)
		}
	}
}

func seqs(recs []events.Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

func lastSeq(t testing.TB, s handlers.EventStore, site events.Site) uint64 {
	t.Helper()
	seq, err := s.LastSeq(context.Background(), site)
	if err != nil {
		t.Fatalf("last seq of %s: %v", site, err)
	}
	return seq
}

func testRoundTrip(t *testing.T, s handlers.EventStore, prefix string) {
	b := NewEvents(prefix + "round-trip")
	want := Append(t, s, b, 0, 12) // two of every type
	Equal(t, Load(t, s, b.Site, 0), want)
	Equal(t, Load(t, s, b.Site, want[4].Seq), want[5:])
	Equal(t, Load(t, s, b.Site, want[11].Seq), nil)
	Equal(t, Load(t, s, b.Site, want[11].Seq+100), nil)
	if got := lastSeq(t, s, b.Site); got != want[11].Seq {
		t.Fatalf("last seq %d, want %d", got, want[11].Seq)
	}
}

func testEmptySite(t *testing.T, s handlers.EventStore, prefix string) {
	start := time.Now()
	empty := events.Site(prefix + "empty")
	Equal(t, Load(t, s, empty, 0), nil)
	Equal(t, Load(t, s, empty, 42), nil)
	if got := lastSeq(t, s, empty); got != 0 {
		t.Fatalf("last seq of an empty site: %d, want 0", got)
	}
	// An empty site must not cost a fetch that waits for a timeout.
	if d := time.Since(start); d > time.Second {
		t.Fatalf("loading an empty site took %s", d)
	}
}

func testConflict(t *testing.T, s handlers.EventStore, prefix string) {
	b := NewEvents(prefix + "conflict")
	want := Append(t, s, b, 0, 3)
	for _, expected := range []uint64{0, want[0].Seq, want[1].Seq, want[2].Seq + 1, want[2].Seq + 1000} {
		_, err := s.Append(context.Background(), b.Next(), expected)
		if !errors.Is(err, handlers.ErrConflict) {
			t.Fatalf("append with stale expectation %d (last %d): got %v, want ErrConflict", expected, want[2].Seq, err)
		}
	}
	Equal(t, Load(t, s, b.Site, 0), want)
}

func testDedup(t *testing.T, s handlers.EventStore, prefix string) {
	b := NewEvents(prefix + "dedup")
	prev := Append(t, s, b, 0, 2)
	after := prev[1].Seq
	e := b.Next()
	seq, err := s.Append(context.Background(), e, after)
	if err != nil {
		t.Fatal(err)
	}
	// The same event again: with the expectation it was decided on (the
	// retry of a lost answer), and with the new last sequence.
	for _, expected := range []uint64{after, seq} {
		again, err := s.Append(context.Background(), e, expected)
		if err != nil {
			t.Fatalf("append the same event again (expected %d): %v", expected, err)
		}
		if again != seq {
			t.Fatalf("append the same event again (expected %d): seq %d, want %d", expected, again, seq)
		}
	}
	Equal(t, Load(t, s, b.Site, 0), append(prev, events.Record{Seq: seq, Event: e}))
}

func testSiteIsolation(t *testing.T, s handlers.EventStore, prefix string) {
	a, b := NewEvents(prefix+"site-a"), NewEvents(prefix+"site-b")
	wantA := Append(t, s, a, 0, 3)
	// Site A's sequences do not count for site B: B's first event expects 0.
	_, err := s.Append(context.Background(), b.Next(), wantA[2].Seq)
	if !errors.Is(err, handlers.ErrConflict) {
		t.Fatalf("append to B expecting A's last seq: got %v, want ErrConflict", err)
	}
	wantB := Append(t, s, b, 0, 2)
	wantA = append(wantA, Append(t, s, a, wantA[2].Seq, 2)...)
	Equal(t, Load(t, s, a.Site, 0), wantA)
	Equal(t, Load(t, s, b.Site, 0), wantB)
	Equal(t, Load(t, s, a.Site, wantB[0].Seq), wantA[3:])
	if got := lastSeq(t, s, b.Site); got != wantB[1].Seq {
		t.Fatalf("last seq of B %d, want %d", got, wantB[1].Seq)
	}
}

func testFirstAppend(t *testing.T, s handlers.EventStore, prefix string) {
	b := NewEvents(prefix + "first-append")
	e := b.Next()
	seq, err := s.Append(context.Background(), e, 0)
	if err != nil {
		t.Fatalf("first append expecting 0 on an empty site: %v", err)
	}
	if _, err := s.Append(context.Background(), b.Next(), 0); !errors.Is(err, handlers.ErrConflict) {
		t.Fatalf("append expecting 0 on a site with an event: got %v, want ErrConflict", err)
	}
	Equal(t, Load(t, s, b.Site, 0), []events.Record{{Seq: seq, Event: e}})
}

func testConcurrentAppend(t *testing.T, s handlers.EventStore, prefix string) {
	b := NewEvents(prefix + "concurrent")
	prev := Append(t, s, b, 0, 1)
	const n = 8
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = b.Next()
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	seqsOut := make([]uint64, n)
	for i := range n {
		wg.Go(func() { seqsOut[i], errs[i] = s.Append(context.Background(), evs[i], prev[0].Seq) })
	}
	wg.Wait()
	var won []events.Record
	for i, err := range errs {
		switch {
		case err == nil:
			won = append(won, events.Record{Seq: seqsOut[i], Event: evs[i]})
		case !errors.Is(err, handlers.ErrConflict):
			t.Fatalf("concurrent append %d: %v", i, err)
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d of %d concurrent appends with one expectation won, want exactly 1", len(won), n)
	}
	Equal(t, Load(t, s, b.Site, 0), append(prev, won...))
}
