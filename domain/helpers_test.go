package domain_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

const site = "acme"

// t0 is the start of every scenario.
var t0 = time.Date(2024, 6, 1, 9, 0, 0, 0, time.UTC)

var (
	alice  = events.Actor{Kind: events.ActorAdmin, ID: "alice@acme.example"}
	system = events.Actor{Kind: events.ActorSystem, ID: "lockout"}
)

// Passcode generations of the tests. The keyed hash of a generation's
// passcode is right(id); any other MAC is a wrong candidate.
func right(genID string) []byte { return []byte("mac-of-passcode-" + genID) }

var wrong = []byte("mac-of-a-wrong-guess")

// policy is a lockout policy for the tests: threshold, window, per-source
// limit and window.
func policy(maxFailed int, window time.Duration, perSource int, sourceWindow time.Duration) domain.Policy {
	return domain.Policy{MaxFailedAttempts: maxFailed, FailureWindow: window, MaxFailedPerSource: perSource, SourceWindow: sourceWindow}
}

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// ev is an event of the history.
type ev struct {
	at    time.Time
	actor events.Actor
	data  events.Payload
}

// history numbers events as a stream would, from sequence 1.
func history(evs ...ev) []events.Record {
	recs := make([]events.Record, len(evs))
	for i, e := range evs {
		actor := e.actor
		if actor == (events.Actor{}) {
			actor = alice
		}
		recs[i] = events.Record{Seq: uint64(i + 1), Event: events.Event{
			ID: "ev" + string(rune('a'+i)), Site: site, OccurredAt: e.at, Actor: actor, Data: e.data}}
	}
	return recs
}

func generated(t time.Time, id string) ev {
	return ev{at: t, data: events.PasscodeGenerated{PasscodeID: id, Hash: right(id), HashKeyID: "mac-1",
		Sealed: []byte("sealed-" + id), SealKeyID: "seal-1"}}
}

func failed(t time.Time, id string, count, maxFailed int, window time.Duration, src events.Source) ev {
	return ev{at: t, actor: events.Actor{Kind: events.ActorDevice}, data: events.EnrollmentAttemptFailed{
		PasscodeID: id, Source: src, FailedAttempts: count, MaxFailedAttempts: maxFailed,
		FailureWindow: events.Duration(window)}}
}

func disabled(t time.Time, id string, reason events.DisableReason) ev {
	actor := alice
	if reason == events.DisableLockout {
		actor = system
	}
	return ev{at: t, actor: actor, data: events.PasscodeDisabled{PasscodeID: id, Reason: reason}}
}

func policyChanged(t time.Time, maxFailed int, window time.Duration, id string, count int) ev {
	return ev{at: t, data: events.LockoutPolicyChanged{MaxFailedAttempts: maxFailed,
		FailureWindow: events.Duration(window), PasscodeID: id, FailedAttempts: count}}
}

// given returns an aggregate that has replayed the history.
func given(pol domain.Policy, evs ...ev) *domain.Passcode {
	p := domain.New(site, pol)
	p.Replay(history(evs...)...)
	return p
}

// store folds a decided payload into p as the next stored event, as the
// handler does once the append succeeded.
func store(t *testing.T, p *domain.Passcode, when time.Time, actor events.Actor, payload events.Payload) {
	t.Helper()
	if payload == nil {
		t.Fatal("store: nil payload")
	}
	p.Replay(events.Record{Seq: p.Seq() + 1, Event: events.Event{ID: "stored", Site: site,
		OccurredAt: when, Actor: actor, Data: payload}})
}

// verify decides an attempt and stores its event, as the handler would, and
// returns the verdict and payload.
func verify(t *testing.T, p *domain.Passcode, when time.Time, a domain.Attempt) (domain.Verdict, events.Payload) {
	t.Helper()
	v, payload := p.Verify(when, a)
	if payload != nil {
		store(t, p, when, events.Actor{Kind: events.ActorDevice, ID: a.Source.DeviceID}, payload)
	}
	return v, payload
}

// ip and dev are sources of attempts.
func ip(addr string) events.Source      { return events.Source{IP: addr} }
func dev(id string) events.Source       { return events.Source{DeviceID: id} }
func src(addr, id string) events.Source { return events.Source{IP: addr, DeviceID: id} }

// failN stores n wrong attempts from distinct sources, one a second from
// start, so that no source is throttled.
func failN(t *testing.T, p *domain.Passcode, start time.Time, n int) {
	t.Helper()
	for i := range n {
		v, payload := verify(t, p, start.Add(time.Duration(i)*time.Second),
			domain.Attempt{Source: ip("10.0.0." + strconv.Itoa(i)), CandidateMAC: wrong})
		if v.Reason != domain.ReasonWrongPasscode || payload == nil {
			t.Fatalf("failure %d: verdict %+v payload %v, want a recorded wrong passcode", i+1, v, payload)
		}
	}
}

// event returns the history entry as an event.
func (e ev) event() events.Event {
	return events.Event{ID: "ev", Site: site, OccurredAt: e.at, Actor: alice, Data: e.data}
}
