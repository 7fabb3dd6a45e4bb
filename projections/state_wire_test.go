package projections

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

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
	if d := busy.Doc(last); d.FailedAttempts != 500 {
		t.Fatalf("setup: %+v", d)
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
			if b[0] != wireVersion {
				t.Fatalf("first byte %d, want version %d", b[0], wireVersion)
			}
			got, err := DecodeSiteState(b, busyPolicy)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, s) {
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

// TestDecodeSiteStateRefusesEarlierVersions: the states versions 2 and 3
// wrote are refused, so that the read store calls the file corrupt and the
// projector rebuilds it from the stream.
func TestDecodeSiteStateRefusesEarlierVersions(t *testing.T) {
	v2 := `{"v":2,"site":"acme","seq":9,"gen":{"id":"p1","at":1,"by":"alice@acme.example","failures":[2]}}`
	// Version 3 as its first bytes: the version, site "acme", seq 9.
	v3 := []byte{3, 4, 'a', 'c', 'm', 'e', 9, 2, 2, 'p', '1', 2, 1, 'a', 1, 4, 0, 0}
	for name, b := range map[string][]byte{"v2": []byte(v2), "v3": v3} {
		if _, err := DecodeSiteState(b, domain.DefaultPolicy()); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// BenchmarkSiteStateEncode is the encoding written per event batch for a
// site under attack.
func BenchmarkSiteStateEncode(b *testing.B) {
	s, _ := busySite(500)
	out, err := s.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
	// After the loop: b.Loop resets the timer, which drops metrics.
	b.ReportMetric(float64(len(out)), "bytes")
}

// BenchmarkSiteStateDecode is the load side.
func BenchmarkSiteStateDecode(b *testing.B) {
	s, _ := busySite(500)
	blob, _ := s.MarshalBinary()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeSiteState(blob, busyPolicy); err != nil {
			b.Fatal(err)
		}
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
	if !reflect.DeepEqual(c2, fresh2) {
		t.Fatalf("second clone folded differently from a fresh state")
	}
	if !reflect.DeepEqual(orig, want) {
		t.Fatalf("applying to the clone changed the original")
	}
	if !reflect.DeepEqual(c, fresh) {
		t.Fatalf("clone folded differently from a fresh state")
	}
	now := last.Add(time.Second)
	if !reflect.DeepEqual(c.Doc(now), fresh.Doc(now)) {
		t.Fatalf("clone doc differs")
	}
	if d := want.Doc(last); d.FailedAttempts != 300 {
		t.Fatalf("setup: %+v", d)
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
