package projector

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natstest"
	"github.com/enrollgate/enrollgate/internal/readstore"
)

// attackerKeys sign under the service's key ID with another key.
type attackerKeys struct{}

func (attackerKeys) EventMACKeyID() string { return "k1" }
func (attackerKeys) NewEventMAC(id string) (hash.Hash, bool) {
	return hmac.New(sha256.New, []byte("not-the-service-event-mac-key-32")), id == "k1"
}

// newLegacyEnv is an env whose stream an earlier version created and wrote
// legacy (unsigned) workload events into before this version first ran.
func newLegacyEnv(t *testing.T, w *workload, legacy int) *env {
	t.Helper()
	s := natstest.StartServer(t)
	nc := natstest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, eventstore.StreamConfig(eventstore.DefaultConfig())); err != nil {
		t.Fatal(err)
	}
	e := &env{url: s.ClientURL(), nc: nc, js: js}
	for range legacy {
		ev := w.next()
		b, _ := events.Encode(ev)
		m := nats.NewMsg(events.Subject(ev.Site))
		m.Data = b
		m.Header.Set(events.HeaderEventType, string(ev.Type()))
		m.Header.Set(jetstream.MsgIDHeader, ev.ID)
		e.publish(t, m)
	}
	stream, err := eventstore.EnsureStream(ctx, js, eventstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if e.auth, err = eventstore.NewAuthenticator(testKeys{}, stream); err != nil {
		t.Fatal(err)
	}
	if e.auth.RequiredFrom() != uint64(legacy)+1 {
		t.Fatalf("boundary %d, want %d", e.auth.RequiredFrom(), legacy+1)
	}
	return e
}

// TestForgedMessagesAreSkippedLiveAndInReplays: on a stream with legacy
// events, the live projection and a rebuild both apply the legacy and the
// signed events, skip every forged message (reported as forged by the
// replay), and end up equal.
func TestForgedMessagesAreSkippedLiveAndInReplays(t *testing.T) {
	w := newWorkload(3, 8)
	e := newLegacyEnv(t, w, 200)
	dir := t.TempDir()
	live, _, err := OpenStore(context.Background(), e.js, storeConfig(filepath.Join(dir, readstore.FileName)), e.cfg(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	p := New(live)
	e.router(t, p)
	e.publishBulk(t, w, 200)

	attacker, err := eventstore.OpenAuthenticator(context.Background(), e.js, attackerKeys{})
	if err != nil {
		t.Fatal(err)
	}
	var forged []uint64
	site := w.sites[0]
	for _, edit := range []func(m *nats.Msg){
		func(m *nats.Msg) { m.Header.Del(events.HeaderMAC) },                                          // unsigned after the boundary
		func(m *nats.Msg) { _ = attacker.SignMsg(m) },                                                 // another key
		func(m *nats.Msg) { m.Header.Set(events.HeaderMAC, "k9"+m.Header.Get(events.HeaderMAC)[2:]) }, // unknown key
		func(m *nats.Msg) { m.Data = append(m.Data, ' ') },                                            // the payload changed after signing
	} {
		m := e.eventMsg(t, w.nextFor(site))
		edit(m)
		forged = append(forged, e.publish(t, m)[0])
	}
	last := e.publish(t, e.eventMsg(t, w.next()))[0]
	waitApplied(t, p, last)
	now := w.at.Add(time.Minute)
	liveDump := snapshot(t, live, now)
	if liveDump.Events != 401 {
		t.Fatalf("live model has %d events, want the 200 legacy and 201 signed ones", liveDump.Events)
	}

	rebuilt, rep, err := Rebuild(context.Background(), e.js, storeConfig(""), filepath.Join(dir, "rebuilt.db"), e.cfg(Config{BatchSize: 50}))
	if err != nil {
		t.Fatal(err)
	}
	defer rebuilt.Close()
	var got []uint64
	for _, pz := range rep.Poison {
		got = append(got, pz.Seq)
		if !pz.Forged {
			t.Errorf("poison %+v not reported as forged", pz)
		}
	}
	if !reflect.DeepEqual(got, forged) || rep.Applied != 401 || rep.Stopped != nil {
		t.Fatalf("rebuild report %+v, want the forged %v skipped and 401 applied", rep, forged)
	}
	compareDumps(t, liveDump, snapshot(t, rebuilt, now))
}

// TestReplayStopsAtAnUnknownType: a replay applies everything before an
// authentic event of a type this build does not know, skips nothing, and
// stops there without failing.
func TestReplayStopsAtAnUnknownType(t *testing.T) {
	e := newEnv(t)
	w := newWorkload(4, 5)
	e.publishBulk(t, w, 300)
	newer := e.publish(t, e.newerTypeMsg(t, w.next()))[0]
	e.publishBulk(t, w, 10)
	st, rep, err := OpenStore(context.Background(), e.js, storeConfig(filepath.Join(t.TempDir(), readstore.FileName)), e.cfg(Config{BatchSize: 64}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if rep.Stopped == nil || rep.Stopped.Seq != newer || rep.Applied != 300 || len(rep.Poison) != 0 {
		t.Fatalf("report %+v (stopped %+v), want 300 applied and a stop at %d", rep, rep.Stopped, newer)
	}
	if st.LastApplied() != newer-1 {
		t.Fatalf("read model at %d, want %d: right before the newer event", st.LastApplied(), newer-1)
	}
}

// nextFor returns the next workload event, for site.
func (w *workload) nextFor(site string) events.Event {
	for {
		if e := w.next(); e.Site == events.Site(site) {
			e.ID = ulid.Make().String()
			return e
		}
	}
}
