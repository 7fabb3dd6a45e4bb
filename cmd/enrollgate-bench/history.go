package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/secrets"
)

// history makes a plausible event log for the rebuild scenario: per site a
// generation first, then mostly attempts (about three failures to one
// success), with reveals, disables, lockouts, regenerations and policy
// changes. Deterministic for a seed.
type history struct {
	rng     *rand.Rand
	entropy *ulid.MonotonicEntropy
	sites   []string
	cur     map[string]string // current passcode ID per site
	fails   map[string]int
	at      time.Time
}

func newHistory(seed uint64, sites int) *history {
	h := &history{rng: rand.New(rand.NewPCG(seed, 7)), cur: map[string]string{}, fails: map[string]int{},
		at: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	h.entropy = ulid.Monotonic(rand.NewChaCha8([32]byte{byte(seed)}), 0)
	for i := range sites {
		h.sites = append(h.sites, fmt.Sprintf("site-%04d", i))
	}
	return h
}

func (h *history) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(h.rng.Uint32())
	}
	return b
}

func (h *history) id() string { return ulid.MustNew(ulid.Timestamp(h.at), h.entropy).String() }

func (h *history) next() events.Event {
	h.at = h.at.Add(time.Duration(h.rng.IntN(2000)) * time.Millisecond)
	site := h.sites[h.rng.IntN(len(h.sites))]
	admin := events.Actor{Kind: events.ActorAdmin, ID: "admin@" + site + ".example"}
	device := events.Actor{Kind: events.ActorDevice, ID: "enrollment-frontend"}
	src := events.Source{IP: fmt.Sprintf("10.0.%d.%d", h.rng.IntN(4), h.rng.IntN(250)),
		DeviceID: fmt.Sprintf("dev-%d", h.rng.IntN(50)), Platform: "ios", UserAgent: "MDM-Enroll/2.1 (iPhone; iOS 19.1)"}
	var actor events.Actor
	var p events.Payload
	pc := h.cur[site]
	switch k := h.rng.IntN(100); {
	case pc == "" || k < 2:
		pc = h.id()
		h.cur[site], h.fails[site] = pc, 0
		actor, p = admin, events.PasscodeGenerated{PasscodeID: pc, Hash: h.bytes(32), HashKeyID: "mac-2026-01",
			Sealed: h.bytes(40), SealKeyID: "seal-2026-01"}
	case k < 4:
		actor, p = admin, events.PasscodeRevealed{PasscodeID: pc}
	case k < 5:
		actor, p = admin, events.PasscodeDisabled{PasscodeID: pc, Reason: events.DisableManual, FailedAttempts: h.fails[site]}
	case k < 6:
		last := h.at
		actor, p = events.Actor{Kind: events.ActorSystem, ID: "lockout"}, events.PasscodeDisabled{PasscodeID: pc,
			Reason: events.DisableLockout, FailedAttempts: 10, MaxFailedAttempts: 10, FailureWindow: events.Duration(time.Hour),
			FirstFailedAt: &last, LastFailedAt: &last, RecentSources: []events.Source{src}}
	case k < 7:
		actor, p = admin, events.LockoutPolicyChanged{MaxFailedAttempts: 3 + h.rng.IntN(10),
			FailureWindow: events.Duration(time.Duration(1+h.rng.IntN(120)) * time.Minute), PasscodeID: pc,
			FailedAttempts: h.fails[site]}
	case k < 30:
		actor, p = device, events.EnrollmentAttemptSucceeded{PasscodeID: pc, AttemptID: h.id(),
			AttemptDigest: h.bytes(16), Source: src}
	default:
		h.fails[site]++
		actor, p = device, events.EnrollmentAttemptFailed{PasscodeID: pc, AttemptID: h.id(),
			AttemptDigest: h.bytes(16), Source: src, FailedAttempts: h.fails[site]%12 + 1, MaxFailedAttempts: 10,
			FailureWindow: events.Duration(time.Hour)}
	}
	return events.Event{ID: h.id(), Site: events.Site(site), OccurredAt: h.at, Actor: actor, Data: p}
}

// replayEnv is a server of its own holding an events stream of n events
// for the rebuild scenario (S6): the scenarios' own appends do not change
// its length between rounds.
type replayEnv struct {
	ns   *server.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	dir  string
	n    uint64
	auth *eventstore.Authenticator // signed the history
}

func newReplayEnv(ctx context.Context, dir string, n int, log zerolog.Logger) (_ *replayEnv, err error) {
	re := &replayEnv{dir: dir, n: uint64(n)}
	defer func() {
		if err != nil {
			re.close()
		}
	}()
	if re.ns, err = startServer(filepath.Join(dir, "jetstream"), "rebuild", false, log); err != nil {
		return nil, err
	}
	if re.nc, err = nats.Connect(re.ns.ClientURL(), nats.Name("history-writer")); err != nil {
		return nil, err
	}
	if re.js, err = jetstream.New(re.nc, jetstream.WithPublishAsyncMaxPending(rawAsyncAhead)); err != nil {
		return nil, err
	}
	stream, err := eventstore.EnsureStream(ctx, re.js, eventstore.DefaultConfig())
	if err != nil {
		return nil, err
	}
	keeper, err := secrets.Open(secrets.Config{Dir: filepath.Join(dir, "keys")})
	if err != nil {
		return nil, err
	}
	if re.auth, err = eventstore.NewAuthenticator(keeper, stream); err != nil {
		return nil, err
	}
	h := newHistory(42, 1000)
	for i := range n {
		e := h.next()
		data, err := events.Encode(e)
		if err != nil {
			return nil, fmt.Errorf("encode history event %d: %w", i, err)
		}
		m := nats.NewMsg(events.Subject(e.Site))
		m.Data = data
		m.Header.Set(events.HeaderEventType, string(e.Type()))
		m.Header.Set(jetstream.MsgIDHeader, e.ID)
		if err := re.auth.SignMsg(m); err != nil {
			return nil, err
		}
		// A busy machine may hold acks back for longer than nats.go's default
		// stall wait: the history is set-up, so it waits instead of failing.
		if _, err := re.js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
			return nil, fmt.Errorf("publish history event %d: %w", i, err)
		}
	}
	select {
	case <-re.js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		return nil, fmt.Errorf("history: %d publishes unacknowledged after 5 minutes", re.js.PublishAsyncPending())
	}
	st, err := re.js.Stream(ctx, eventstore.StreamName)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs != re.n || info.State.LastSeq != re.n {
		return nil, fmt.Errorf("history: stream holds %d messages up to seq %d, want %d", info.State.Msgs, info.State.LastSeq, n)
	}
	return re, nil
}

func (re *replayEnv) close() {
	if re.nc != nil {
		re.nc.Close()
	}
	stopServer(re.ns)
}
