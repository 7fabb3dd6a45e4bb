package projections

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

var (
	alice = events.Actor{Kind: events.ActorAdmin, ID: "alice@acme.example"}
	saga  = events.Actor{Kind: events.ActorSystem, ID: "lockout-saga"}
	dev   = events.Actor{Kind: events.ActorDevice, ID: "device"}
)

func rec(seq uint64, at time.Time, actor events.Actor, p events.Payload) events.Record {
	return events.Record{Seq: seq, Event: events.Event{ID: fmt.Sprintf("01J%023d", seq), Site: "acme",
		OccurredAt: at, Actor: actor, Data: p}}
}

func gen(id string) events.PasscodeGenerated {
	return events.PasscodeGenerated{PasscodeID: id, Hash: []byte("hash-bytes"), HashKeyID: "k1",
		Sealed: []byte("sealed-bytes"), SealKeyID: "s1"}
}

func fail(id string, n int, ip string) events.EnrollmentAttemptFailed {
	return events.EnrollmentAttemptFailed{PasscodeID: id, Source: events.Source{IP: ip}, FailedAttempts: n,
		MaxFailedAttempts: 10, FailureWindow: events.Duration(time.Hour), AttemptDigest: []byte("digest")}
}

// docFromDomain builds the expected document from the domain aggregate, the
// reference implementation of the rules, and from a failure log folded from
// recs on its own: the throttled sources (the aggregate's are the same log's,
// tested in domain).
func docFromDomain(p *domain.Passcode, pol domain.Policy, recs []events.Record, now time.Time) StateDoc {
	d := StateDocFromDomain(p.State(now))
	var log domain.FailureLog
	var current string
	for _, r := range recs {
		log.Apply(r.Event, current, pol)
		if g, ok := r.Event.Data.(events.PasscodeGenerated); ok {
			current = g.PasscodeID
		}
	}
	for _, ts := range log.ThrottledSources(now, pol) {
		w := ThrottledSource{Key: ts.Key}
		if !ts.Until.IsZero() {
			u := ts.Until.UTC()
			w.Until = &u
		}
		d.ThrottledSources = append(d.ThrottledSources, w)
	}
	sort.Slice(d.ThrottledSources, func(i, j int) bool { return d.ThrottledSources[i].Key < d.ThrottledSources[j].Key })
	return d
}

func TestSiteStateScenarios(t *testing.T) {
	pol := domain.DefaultPolicy()
	tests := []struct {
		name  string
		recs  []events.Record
		now   time.Time
		check func(t *testing.T, d StateDoc)
	}{
		{"no events", nil, t0, func(t *testing.T, d StateDoc) {
			if d.Status != domain.StatusNone || d.MaxFailedAttempts != 10 || d.FailureWindow != events.Duration(time.Hour) {
				t.Errorf("got %+v", d)
			}
		}},
		{"generated then 3 failures, counted in window", []events.Record{
			rec(1, t0, alice, gen("p1")),
			rec(2, t0.Add(time.Minute), dev, fail("p1", 1, "10.0.0.7")),
			rec(3, t0.Add(2*time.Minute), dev, fail("p1", 2, "10.0.0.8")),
			rec(4, t0.Add(3*time.Minute), dev, fail("p1", 3, "10.0.0.9")),
		}, t0.Add(30 * time.Minute), func(t *testing.T, d StateDoc) {
			if d.Status != domain.StatusActive || d.FailedAttempts != 3 || d.GeneratedBy != alice.ID || d.Seq != 4 {
				t.Errorf("got %+v", d)
			}
			if d.LastFailedAt == nil || !d.LastFailedAt.Equal(t0.Add(3*time.Minute)) {
				t.Errorf("last failed at %v", d.LastFailedAt)
			}
		}},
		{"failures age out of the window at query time", []events.Record{
			rec(1, t0, alice, gen("p1")),
			rec(2, t0.Add(time.Minute), dev, fail("p1", 1, "10.0.0.7")),
			rec(3, t0.Add(50*time.Minute), dev, fail("p1", 2, "10.0.0.7")),
		}, t0.Add(70 * time.Minute), func(t *testing.T, d StateDoc) {
			if d.FailedAttempts != 1 {
				t.Errorf("failed attempts %d, want 1", d.FailedAttempts)
			}
		}},
		{"regeneration resets the count", []events.Record{
			rec(1, t0, alice, gen("p1")),
			rec(2, t0.Add(time.Minute), dev, fail("p1", 1, "10.0.0.7")),
			rec(3, t0.Add(2*time.Minute), alice, gen("p2")),
		}, t0.Add(3 * time.Minute), func(t *testing.T, d StateDoc) {
			if d.FailedAttempts != 0 || d.PasscodeID != "p2" || d.LastFailedAt != nil {
				t.Errorf("got %+v", d)
			}
		}},
		{"lockout disable", []events.Record{
			rec(1, t0, alice, gen("p1")),
			rec(2, t0.Add(time.Minute), dev, events.EnrollmentAttemptFailed{PasscodeID: "p1", FailedAttempts: 10, MaxFailedAttempts: 10}),
			rec(3, t0.Add(2*time.Minute), saga, events.PasscodeDisabled{PasscodeID: "p1", Reason: events.DisableLockout, FailedAttempts: 10}),
		}, t0.Add(3 * time.Minute), func(t *testing.T, d StateDoc) {
			if d.Status != domain.StatusDisabled || !d.Locked || d.DisabledReason != events.DisableLockout ||
				d.DisabledBy != saga.ID || d.DisabledAt == nil {
				t.Errorf("got %+v", d)
			}
		}},
		{"disable of an older generation leaves the newer active", []events.Record{
			rec(1, t0, alice, gen("p1")),
			rec(2, t0, alice, gen("p2")),
			rec(3, t0, saga, events.PasscodeDisabled{PasscodeID: "p1", Reason: events.DisableLockout}),
		}, t0, func(t *testing.T, d StateDoc) {
			if d.Status != domain.StatusActive || d.PasscodeID != "p2" {
				t.Errorf("got %+v", d)
			}
		}},
		{"site policy overrides the defaults", []events.Record{
			rec(1, t0, alice, events.LockoutPolicyChanged{MaxFailedAttempts: 5, FailureWindow: events.Duration(30 * time.Minute)}),
		}, t0, func(t *testing.T, d StateDoc) {
			if d.MaxFailedAttempts != 5 || d.FailureWindow != events.Duration(30*time.Minute) {
				t.Errorf("got %+v", d)
			}
		}},
		{"a source over its limit is throttled", []events.Record{
			rec(1, t0, alice, gen("p1")),
			rec(2, t0.Add(1*time.Minute), dev, fail("p1", 1, "10.0.0.7")),
			rec(3, t0.Add(2*time.Minute), dev, fail("p1", 2, "10.0.0.7")),
			rec(4, t0.Add(3*time.Minute), dev, fail("p1", 3, "10.0.0.7")),
			rec(5, t0.Add(4*time.Minute), dev, fail("p1", 4, "10.0.0.7")),
			rec(6, t0.Add(5*time.Minute), dev, fail("p1", 5, "10.0.0.7")),
		}, t0.Add(6 * time.Minute), func(t *testing.T, d StateDoc) {
			// Its 5 failures count against the generation for the failure
			// window (1h) from the first: until then it stays throttled, so
			// that one source can never lock the site.
			until := t0.Add(61 * time.Minute)
			want := []ThrottledSource{{Key: "ip:10.0.0.7", Until: &until}}
			if !reflect.DeepEqual(d.ThrottledSources, want) {
				t.Errorf("throttled %+v, want %+v", d.ThrottledSources, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSiteState("acme", pol)
			s.Apply(tt.recs...)
			tt.check(t, s.Doc(tt.now))
			// The domain aggregate is the reference.
			p := domain.New("acme", pol)
			p.Replay(tt.recs...)
			if got, want := s.Doc(tt.now), docFromDomain(p, pol, tt.recs, tt.now); !reflect.DeepEqual(got, want) {
				t.Errorf("differs from domain:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestSiteStateApplyIsIdempotent(t *testing.T) {
	s := NewSiteState("acme", domain.DefaultPolicy())
	r := []events.Record{rec(1, t0, alice, gen("p1")), rec(2, t0, dev, fail("p1", 1, "1.2.3.4"))}
	s.Apply(r...)
	s.Apply(r...)
	if d := s.Doc(t0); d.FailedAttempts != 1 || d.Seq != 2 {
		t.Fatalf("got %+v", d)
	}
	other := r[0]
	other.Seq, other.Event.Site = 3, "other"
	s.Apply(other)
	if s.Seq() != 2 {
		t.Fatalf("applied another site's record")
	}
}

// randomHistory returns a random history of one site with times that never
// go backwards.
func randomHistory(rng *rand.Rand, n int) []events.Record {
	var out []events.Record
	at := t0
	ids := []string{}
	cur := ""
	ips := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", ""}
	devs := []string{"d1", "d2", ""}
	for i := 1; i <= n; i++ {
		at = at.Add(time.Duration(rng.IntN(600)) * time.Second)
		pick := func() string {
			if len(ids) == 0 || rng.IntN(4) > 0 {
				return cur
			}
			return ids[rng.IntN(len(ids))]
		}
		var p events.Payload
		actor := dev
		switch k := rng.IntN(20); {
		case k == 0 || cur == "":
			cur = fmt.Sprintf("p%d", i)
			ids = append(ids, cur)
			p, actor = gen(cur), alice
		case k == 1:
			reason := events.DisableManual
			if rng.IntN(2) == 0 {
				reason = events.DisableLockout
			}
			p, actor = events.PasscodeDisabled{PasscodeID: pick(), Reason: reason}, saga
		case k == 2:
			w := []time.Duration{0, time.Minute, 10 * time.Minute, 2 * time.Hour}[rng.IntN(4)]
			p, actor = events.LockoutPolicyChanged{MaxFailedAttempts: 1 + rng.IntN(12), FailureWindow: events.Duration(w),
				PasscodeID: pick(), FailedAttempts: rng.IntN(12),
				Mode: []events.LockoutMode{"", events.ModeEnforce, events.ModeMonitor}[rng.IntN(3)]}, alice
		case k == 3:
			p, actor = events.PasscodeRevealed{PasscodeID: cur}, alice
		case k == 4:
			p = events.EnrollmentAttemptSucceeded{PasscodeID: pick(), Source: events.Source{IP: ips[rng.IntN(4)]}}
		case k == 5:
			outcome := []events.ExcusedOutcome{events.OutcomeOutdated, events.OutcomeMistyped}[rng.IntN(2)]
			p = events.EnrollmentAttemptExcused{PasscodeID: pick(), Outcome: outcome,
				Source: events.Source{IP: ips[rng.IntN(4)], DeviceID: devs[rng.IntN(3)]}}
		case k == 6:
			// A generation with a lifecycle, granting the previous one a grace.
			prev := cur
			cur = fmt.Sprintf("p%d", i)
			ids = append(ids, cur)
			g := events.PasscodeGenerated{PasscodeID: cur, Hash: []byte("h"), HashKeyID: "k", Sealed: []byte("s"), SealKeyID: "k",
				CheckCharacter: rng.IntN(2) == 0, MaxEnrollments: rng.IntN(3)}
			if rng.IntN(2) == 0 {
				exp := at.Add(time.Duration(rng.IntN(7200)) * time.Second)
				g.ExpiresAt = &exp
			}
			if rng.IntN(2) == 0 {
				until := at.Add(time.Duration(rng.IntN(7200)) * time.Second)
				g.RetiringPasscodeID, g.RetiringUntil = prev, &until
			}
			p, actor = g, alice
		case k == 7:
			p, actor = events.PasscodeExpired{PasscodeID: pick(), Reason: events.LapseUsedUp}, saga
		case k == 8:
			p, actor = events.PasscodeLockoutSimulated{PasscodeID: pick()}, saga
		default:
			p = events.EnrollmentAttemptFailed{PasscodeID: pick(), FailedAttempts: 1 + rng.IntN(12), MaxFailedAttempts: 10,
				Mode:   []events.LockoutMode{"", events.ModeMonitor}[rng.IntN(2)],
				Source: events.Source{IP: ips[rng.IntN(4)], DeviceID: devs[rng.IntN(3)]}}
		}
		out = append(out, rec(uint64(i*3), at, actor, p))
	}
	return out
}

// TestSiteStateMatchesDomain folds random histories into SiteState and into
// domain.Passcode and compares the documents at several query times, also
// after an encode/decode round trip of the state.
func TestSiteStateMatchesDomain(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	policies := []domain.Policy{
		domain.DefaultPolicy(),
		{MaxFailedAttempts: 3, FailureWindow: 0, MaxFailedPerSource: 2, SourceWindow: 5 * time.Minute},
		{MaxFailedAttempts: 20, FailureWindow: 10 * time.Minute, MaxFailedPerSource: 30, SourceWindow: time.Hour},
	}
	for run := range 300 {
		pol := policies[run%len(policies)]
		hist := randomHistory(rng, 1+rng.IntN(120))
		s := NewSiteState("acme", pol)
		p := domain.New("acme", pol)
		// Apply in random chunks, comparing after each chunk.
		for i := 0; i < len(hist); {
			j := min(len(hist), i+1+rng.IntN(20))
			s.Apply(hist[i:j]...)
			p.Replay(hist[i:j]...)
			last := hist[j-1].Event.OccurredAt
			for _, now := range []time.Time{last, last.Add(time.Minute), last.Add(20 * time.Minute), last.Add(3 * time.Hour)} {
				if got, want := s.Doc(now), docFromDomain(p, pol, hist[:j], now); !reflect.DeepEqual(got, want) {
					t.Fatalf("run %d after %d events at %s:\n got %+v\nwant %+v", run, j, now, got, want)
				}
			}
			b, err := s.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			s2, err := DecodeSiteState(b, pol)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s2.Doc(last), s.Doc(last)) {
				t.Fatalf("round trip changed the document")
			}
			// Clones are independent of the original.
			c := s.Clone()
			s = c
			i = j
		}
	}
}

func TestCloneIsDeep(t *testing.T) {
	s := NewSiteState("acme", domain.DefaultPolicy())
	s.Apply(rec(1, t0, alice, gen("p1")), rec(2, t0, dev, fail("p1", 1, "1.1.1.1")))
	before := s.Doc(t0)
	c := s.Clone()
	c.Apply(rec(3, t0, dev, fail("p1", 2, "1.1.1.1")), rec(4, t0, saga, events.PasscodeDisabled{PasscodeID: "p1", Reason: events.DisableManual}))
	if !reflect.DeepEqual(s.Doc(t0), before) {
		t.Fatalf("clone shares state with the original")
	}
	if c.Doc(t0).FailedAttempts != 2 {
		t.Fatalf("clone did not apply")
	}
}

func TestDecodeSiteStateRejectsGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("{"), []byte(`{"v":99}`)} {
		if _, err := DecodeSiteState(b, domain.DefaultPolicy()); err == nil {
			t.Errorf("%q: no error", b)
		}
	}
}

func TestStateDocJSON(t *testing.T) {
	s := NewSiteState("acme", domain.DefaultPolicy())
	s.Apply(rec(1, t0, alice, gen("p1")))
	b, err := json.Marshal(s.Doc(t0))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"site", "status", "passcode_id", "generated_at", "generated_by", "failed_attempts",
		"max_failed_attempts", "failure_window", "seq"} {
		if _, ok := m[k]; !ok {
			t.Errorf("missing %q in %s", k, b)
		}
	}
	if m["failure_window"] != "1h0m0s" || m["status"] != "active" {
		t.Errorf("got %s", b)
	}
}
