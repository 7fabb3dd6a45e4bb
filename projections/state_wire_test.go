package projections

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// marshalV2 is what MarshalBinary wrote before version 3, kept to test that
// such files still load and to compare the two encodings.
func marshalV2(s *SiteState) ([]byte, error) {
	return json.Marshal(wireState{V: wireVersionJSON, Site: s.site, Seq: s.seq, Override: s.override, Gen: s.gen, Sources: s.sources})
}

var busyPolicy = domain.Policy{MaxFailedAttempts: 1000, FailureWindow: time.Hour, MaxFailedPerSource: 5, SourceWindow: 15 * time.Minute}

// busySite is a site under attack: n failures, one a second, each from its
// own IP (every fourth with a device ID too), so the state holds n or more
// source keys both per generation and in the source window.
func busySite(n int) (*SiteState, []events.Record) {
	s := NewSiteState("acme", busyPolicy)
	recs := []events.Record{rec(1, t0, alice, gen("p1"))}
	for i := range n {
		src := events.Source{IP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}
		if i%4 == 0 {
			src.DeviceID = fmt.Sprintf("dev-%d", i)
		}
		f := events.EnrollmentAttemptFailed{PasscodeID: "p1", Source: src, FailedAttempts: i + 1, MaxFailedAttempts: 1000,
			FailureWindow: events.Duration(time.Hour)}
		recs = append(recs, rec(uint64(i+2), t0.Add(time.Duration(i+1)*time.Second), dev, f))
	}
	s.Apply(recs...)
	return s, recs
}

// normalized makes empty maps and slices nil: neither encoding keeps the
// difference, and the fold treats them alike.
func normalized(s *SiteState) *SiteState {
	c := s.Clone()
	norm := func(m map[string][]int64) map[string][]int64 {
		if len(m) == 0 {
			return nil
		}
		return m
	}
	c.sources = norm(c.sources)
	if c.gen != nil {
		c.gen.BySource = norm(c.gen.BySource)
		if len(c.gen.Failures) == 0 {
			c.gen.Failures = nil
		}
	}
	return c
}

func TestSiteStateWireRoundTrip(t *testing.T) {
	busy, recs := busySite(500)
	last := recs[len(recs)-1].Event.OccurredAt
	// The same attack, then an override that locks and a disabled generation.
	disabled, _ := busySite(500)
	disabled.Apply(
		rec(600, last, alice, events.LockoutPolicyChanged{MaxFailedAttempts: 400, FailureWindow: events.Duration(10 * time.Minute),
			PasscodeID: "p1", FailedAttempts: 500}),
		rec(601, last.Add(time.Second), saga, events.PasscodeDisabled{PasscodeID: "p1", Reason: events.DisableLockout}),
	)
	if d := disabled.Doc(last); d.Status != domain.StatusDisabled || !d.Locked || d.MaxFailedAttempts != 400 {
		t.Fatalf("setup: %+v", d)
	}
	if len(busy.sources) < 500 || len(busy.gen.BySource) < 500 {
		t.Fatalf("setup: %d source keys, %d per generation", len(busy.sources), len(busy.gen.BySource))
	}
	cases := map[string]*SiteState{
		"empty":                 NewSiteState("acme", busyPolicy),
		"generated only":        func() *SiteState { s := NewSiteState("acme", busyPolicy); s.Apply(recs[0]); return s }(),
		"busy":                  busy,
		"override and disabled": disabled,
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			b, err := s.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != wireVersionBinary {
				t.Fatalf("first byte %d, want version %d", b[0], wireVersionBinary)
			}
			got, err := DecodeSiteState(b, busyPolicy)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalized(got), normalized(s)) {
				t.Fatalf("decoded state differs:\n got %+v\nwant %+v", got, s)
			}
			for _, now := range []time.Time{last, last.Add(5 * time.Minute), last.Add(2 * time.Hour)} {
				if g, w := got.Doc(now), s.Doc(now); !reflect.DeepEqual(g, w) {
					t.Fatalf("doc at %s:\n got %+v\nwant %+v", now, g, w)
				}
			}
			// The decoded state folds later events as the original does.
			more := rec(10_000, last.Add(3*time.Second), dev, fail("p1", 1, "10.0.0.7"))
			orig := s.Clone()
			orig.Apply(more)
			got.Apply(more)
			if g, w := got.Doc(last.Add(4*time.Second)), orig.Doc(last.Add(4*time.Second)); !reflect.DeepEqual(g, w) {
				t.Fatalf("after one more event:\n got %+v\nwant %+v", g, w)
			}
			// Truncated or extended encodings are errors, never panics. A
			// busy site's encoding is cut at about 300 points (every cut of
			// it takes seconds under -race); the small ones at every byte.
			step := max(1, len(b)/300)
			for i := 0; i < len(b); i += step {
				if _, err := DecodeSiteState(b[:i], busyPolicy); err == nil {
					t.Fatalf("truncated to %d of %d bytes: no error", i, len(b))
				}
			}
			if _, err := DecodeSiteState(append(b[:len(b):len(b)], 0), busyPolicy); err == nil {
				t.Fatalf("trailing byte: no error")
			}
		})
	}
}

func TestDecodeSiteStateVersion2(t *testing.T) {
	// A blob as version 2 wrote it: policy override, a locked and disabled
	// generation with failures per source, and the per-source window.
	at := func(sec int) int64 { return t0.Add(time.Duration(sec) * time.Second).UnixNano() }
	blob := fmt.Sprintf(`{"v":2,"site":"acme","seq":9,"override":{"max_failed":2,"window":600000000000},`+
		`"gen":{"id":"p1","at":%d,"by":"alice@acme.example","locked":true,`+
		`"disabled":{"at":%d,"by":"lockout-saga","reason":"lockout"},"failures":[%d,%d],`+
		`"by_source":{"ip:10.0.0.1":[%d],"ip:10.0.0.2":[%d]}},`+
		`"sources":{"ip:10.0.0.1":[%d],"ip:10.0.0.2":[%d]}}`,
		at(0), at(30), at(10), at(20), at(10), at(20), at(10), at(20))
	got, err := DecodeSiteState([]byte(blob), domain.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	want := NewSiteState("acme", domain.DefaultPolicy())
	want.Apply(
		rec(1, t0, alice, gen("p1")),
		rec(2, t0, alice, events.LockoutPolicyChanged{MaxFailedAttempts: 2, FailureWindow: events.Duration(10 * time.Minute)}),
		rec(4, t0.Add(10*time.Second), dev, fail("p1", 1, "10.0.0.1")),
		rec(6, t0.Add(20*time.Second), dev, events.EnrollmentAttemptFailed{PasscodeID: "p1", Source: events.Source{IP: "10.0.0.2"},
			FailedAttempts: 2, MaxFailedAttempts: 2, FailureWindow: events.Duration(10 * time.Minute)}),
		rec(9, t0.Add(30*time.Second), saga, events.PasscodeDisabled{PasscodeID: "p1", Reason: events.DisableLockout}),
	)
	// Version 2 predates the lifecycle: the fold's mode and last failed
	// source have no place in it.
	want.override.Mode, want.gen.LastFailedSource = "", nil
	if !reflect.DeepEqual(normalized(got), normalized(want)) {
		t.Fatalf("decoded v2 state:\n got %+v\nwant %+v", got, want)
	}
	now := t0.Add(time.Minute)
	if g, w := got.Doc(now), want.Doc(now); !reflect.DeepEqual(g, w) {
		t.Fatalf("doc:\n got %+v\nwant %+v", g, w)
	}
	// A busy site written by version 2 loads equal to its version 3 round trip.
	busy, _ := busySite(200)
	v2, err := marshalV2(busy)
	if err != nil {
		t.Fatal(err)
	}
	from2, err := DecodeSiteState(v2, busyPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if busy.override != nil {
		busy.override.Mode = "" // version 2 predates modes
	}
	busy.gen.LastFailedSource = nil
	if !reflect.DeepEqual(normalized(from2), normalized(busy)) {
		t.Fatalf("busy v2 state changed in decoding")
	}
}

// BenchmarkSiteStateEncode compares the encoding written per event batch for
// a site under attack: version 2 (JSON, sorted keys) and version 3 (binary).
func BenchmarkSiteStateEncode(b *testing.B) {
	s, _ := busySite(500)
	for _, bc := range []struct {
		name string
		enc  func(*SiteState) ([]byte, error)
	}{{"json-v2", marshalV2}, {"binary-v3", (*SiteState).MarshalBinary}} {
		b.Run(bc.name, func(b *testing.B) {
			out, err := bc.enc(s)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.enc(s); err != nil {
					b.Fatal(err)
				}
			}
			// After the loop: b.Loop resets the timer, which drops metrics.
			b.ReportMetric(float64(len(out)), "bytes")
		})
	}
}

// BenchmarkSiteStateDecode is the load side of the same comparison.
func BenchmarkSiteStateDecode(b *testing.B) {
	s, _ := busySite(500)
	v2, _ := marshalV2(s)
	v3, _ := s.MarshalBinary()
	for _, bc := range []struct {
		name string
		blob []byte
	}{{"json-v2", v2}, {"binary-v3", v3}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeSiteState(bc.blob, busyPolicy); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCloneOfABusySiteIsIndependent: the clone's per-source times share one
// backing array, so appending to one key must not write over another, in the
// clone or in the original.
func TestCloneOfABusySiteIsIndependent(t *testing.T) {
	orig, recs := busySite(300)
	// An independent copy made without Clone, which is under test.
	b, err := orig.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want, err := DecodeSiteState(b, busyPolicy)
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1].Event.OccurredAt
	c := orig.Clone()
	fresh, _ := busySite(300)
	var more []events.Record
	for i := range 600 {
		// The same sources again (in the source window), then the clone and a
		// fresh fold must agree.
		r := recs[1+i%300]
		r.Seq, r.Event.OccurredAt = uint64(1000+i), last.Add(time.Duration(i+1)*time.Millisecond)
		more = append(more, r)
	}
	// A second clone of the same original, changed differently: clones share
	// the original's times, so neither may write where the other reads.
	c2 := orig.Clone()
	fresh2, _ := busySite(300)
	other := make([]events.Record, len(more))
	for i, r := range more {
		r.Event.OccurredAt = r.Event.OccurredAt.Add(time.Hour + time.Duration(i)*time.Second)
		other[i] = r
	}
	for i := range more { // interleaved, as two commits of one site could be
		c.Apply(more[i])
		c2.Apply(other[i])
	}
	fresh.Apply(more...)
	fresh2.Apply(other...)
	if !reflect.DeepEqual(normalized(c2), normalized(fresh2)) {
		t.Fatalf("second clone folded differently from a fresh state")
	}
	if !reflect.DeepEqual(normalized(orig), normalized(want)) {
		t.Fatalf("applying to the clone changed the original")
	}
	if !reflect.DeepEqual(normalized(c), normalized(fresh)) {
		t.Fatalf("clone folded differently from a fresh state")
	}
	now := last.Add(time.Second)
	if !reflect.DeepEqual(c.Doc(now), fresh.Doc(now)) {
		t.Fatalf("clone doc differs")
	}
	if len(want.sources) < 300 {
		t.Fatalf("setup: %d sources", len(want.sources))
	}
}

// BenchmarkSiteStateClone is what the read store pays per commit that
// touches a site under attack, before applying the commit's events.
func BenchmarkSiteStateClone(b *testing.B) {
	s, _ := busySite(500)
	b.ReportAllocs()
	for b.Loop() {
		_ = s.Clone()
	}
}
