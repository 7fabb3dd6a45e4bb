package projector

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natstest"
	"github.com/enrollgate/enrollgate/internal/readstore"
)

func (e *env) router(t *testing.T, p *Projector) *consume.Router {
	t.Helper()
	cfg := consume.DefaultConfig()
	cfg.AckWait = 5 * time.Second
	cfg.HandlerTimeout = 3 * time.Second
	cfg.RetryInitialInterval = 2 * time.Millisecond
	cfg.RetryMaxInterval = 20 * time.Millisecond
	cfg.InProcessRetries = 1
	cfg.CloseTimeout = 5 * time.Second
	r, err := consume.NewRouter(cfg, func() (*nats.Conn, error) { return nats.Connect(e.url) }, e.auth, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Register(r, e.js, Durable("test"), e.cfg(Config{RetryInitialInterval: 10 * time.Millisecond, RetryMaxInterval: 100 * time.Millisecond})); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.Run(context.Background()); err != nil {
			t.Errorf("router: %v", err)
		}
	}()
	<-r.Running()
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close router: %v", err)
		}
		wg.Wait()
	})
	return r
}

func waitApplied(t *testing.T, p *Projector, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Store().WaitFor(ctx, seq); err != nil {
		t.Fatalf("live projection did not reach seq %d: %v", seq, err)
	}
}

// TestRebuildEqualsLive runs the live projection over a mixed workload with
// poison messages, rebuilds from sequence 1 into another file, and compares
// the two read models entry for entry; the live one dead-letters each
// poison message once, and keeps following.
func TestRebuildEqualsLive(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	ctx := context.Background()
	live, rep, err := OpenStore(ctx, e.js, storeConfig(filepath.Join(dir, readstore.FileName)), e.cfg(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = live.Close() }()
	if rep.Rebuilt || rep.Applied != 0 {
		t.Fatalf("open of an empty model: %+v", rep)
	}
	p := New(live)
	e.router(t, p)

	w := newWorkload(1, 25)
	var poisonAt []uint64
	var last uint64
	for round := range 3 {
		e.publishBulk(t, w, 400)
		seqs := e.publish(t, poisonMsg(w.sites[round], fmt.Sprintf(`{"id":"broken %d"`, round)))
		poisonAt = append(poisonAt, seqs[0])
	}
	// A well-formed event stored on another site's subject is poison too.
	wrong := e.eventMsg(t, w.next())
	wrong.Subject = "enrollgate.events.not-its-site"
	poisonAt = append(poisonAt, e.publish(t, wrong)[0])
	// The next good event after the poison is applied.
	last = e.publish(t, e.eventMsg(t, w.next()))[0]
	waitApplied(t, p, last)

	now := w.at.Add(10 * time.Minute)
	liveDump := snapshot(t, live, now)
	if liveDump.Events != 1201 || liveDump.Last != last {
		t.Fatalf("live model has %d events up to %d, want 1201 up to %d", liveDump.Events, liveDump.Last, last)
	}

	rebuilt, rep, err := Rebuild(ctx, e.js, storeConfig(""), filepath.Join(dir, "rebuilt.db"), e.cfg(Config{BatchSize: 100}))
	if err != nil {
		t.Fatal(err)
	}
	var gotPoison []uint64
	for _, pz := range rep.Poison {
		gotPoison = append(gotPoison, pz.Seq)
		if pz.Reason == "" {
			t.Errorf("poison %d without a reason", pz.Seq)
		}
	}
	if !reflect.DeepEqual(gotPoison, poisonAt) {
		t.Fatalf("rebuild reported poison %v, want %v", gotPoison, poisonAt)
	}
	if rep.From != 1 || rep.To != last || rep.Applied != 1201 {
		t.Fatalf("report %+v", rep)
	}
	rebuiltDump := snapshot(t, rebuilt, now)
	compareDumps(t, liveDump, rebuiltDump)

	defer rebuilt.Close()
	for _, seq := range poisonAt {
		h, ok := e.deadLetters(t, Durable("test"))[seq]
		if !ok || h.Get(consume.HeaderDeadLetterReason) == "" || h.Get(consume.HeaderOriginalStream) != eventstore.StreamName {
			t.Fatalf("no dead letter of poison at %d: %v", seq, h)
		}
	}
	if n := len(e.deadLetters(t, Durable("test"))); n != len(poisonAt) {
		t.Fatalf("%d dead letters, want %d", n, len(poisonAt))
	}

	// Events keep coming.
	e.publishBulk(t, w, 50)
	last = e.publish(t, e.eventMsg(t, w.next()))[0]
	waitApplied(t, p, last)
	nowAfter := w.at.Add(time.Minute)
	fresh, _, err := Rebuild(ctx, e.js, storeConfig(""), filepath.Join(dir, "fresh.db"), e.cfg(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	compareDumps(t, snapshot(t, live, nowAfter), snapshot(t, fresh, nowAfter))
}

func compareDumps(t *testing.T, a, b dump) {
	t.Helper()
	if a.Last != b.Last || a.Events != b.Events {
		t.Fatalf("last %d vs %d, events %d vs %d", a.Last, b.Last, a.Events, b.Events)
	}
	if !reflect.DeepEqual(a.States, b.States) {
		for i := range min(len(a.States), len(b.States)) {
			if !reflect.DeepEqual(a.States[i], b.States[i]) {
				t.Fatalf("state %d differs:\n%+v\n%+v", i, a.States[i], b.States[i])
			}
		}
		t.Fatalf("states differ: %d vs %d", len(a.States), len(b.States))
	}
	for site, entries := range a.Audit {
		if !reflect.DeepEqual(entries, b.Audit[site]) {
			t.Fatalf("audit of %s differs (%d vs %d entries)", site, len(entries), len(b.Audit[site]))
		}
	}
	if !reflect.DeepEqual(a.Attempts, b.Attempts) {
		t.Fatalf("attempts differ")
	}
}

// TestRestartCatchesUp: a durable model closed at some point picks up, at
// the next open, only the events appended since, and ends equal to a rebuild.
func TestRestartCatchesUp(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	ctx := context.Background()
	path := filepath.Join(dir, readstore.FileName)
	w := newWorkload(2, 10)
	e.publishBulk(t, w, 300)
	st, rep, err := OpenStore(ctx, e.js, storeConfig(path), e.cfg(Config{BatchSize: 64}))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Applied != 300 || st.LastApplied() != 300 {
		t.Fatalf("first open: %+v, last %d", rep, st.LastApplied())
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	e.publishBulk(t, w, 120)
	st, rep, err = OpenStore(ctx, e.js, storeConfig(path), e.cfg(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if rep.From != 301 || rep.Applied != 120 || rep.Rebuilt {
		t.Fatalf("reopen replayed %+v, want only the 120 new events", rep)
	}
	fresh, _, err := Rebuild(ctx, e.js, storeConfig(""), filepath.Join(dir, "fresh.db"), e.cfg(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	now := w.at
	compareDumps(t, snapshot(t, st, now), snapshot(t, fresh, now))
}

// TestOpenStoreRebuildsABrokenFile: a corrupt file is moved aside and
// rebuilt, not a crash and not an empty model.
func TestOpenStoreRebuildsABrokenFile(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	path := filepath.Join(dir, readstore.FileName)
	w := newWorkload(3, 5)
	e.publishBulk(t, w, 50)
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	st, rep, err := OpenStore(context.Background(), e.js, storeConfig(path), e.cfg(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if !rep.Rebuilt || !errors.Is(rep.RebuildReason, readstore.ErrCorrupt) || st.LastApplied() != 50 {
		t.Fatalf("report %+v, last %d", rep, st.LastApplied())
	}
	aside, _ := filepath.Glob(path + ".broken-*")
	if len(aside) != 1 {
		t.Fatalf("broken file not kept aside: %v", aside)
	}
}

func TestCatchUpOfAnEmptyStreamReturnsAtOnce(t *testing.T) {
	e := newEnv(t)
	st, rep, err := OpenStore(context.Background(), e.js, storeConfig(filepath.Join(t.TempDir(), readstore.FileName)), e.cfg(Config{IdleTimeout: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if rep.Applied != 0 || rep.To != 0 {
		t.Fatalf("report %+v", rep)
	}
}

func TestConfigValidate(t *testing.T) {
	e := newEnv(t)
	if err := (e.cfg(Config{})).Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if err := (e.cfg(Config{BatchSize: -1, IdleTimeout: -time.Second})).Validate(); err == nil {
		t.Fatal("bad config accepted")
	}
	if err := (Config{}).Validate(); err == nil {
		t.Fatal("config without an authenticator accepted")
	}
}

// TestLiveProjectionIsReadyOnceCaughtUp: with a backlog ending in a
// poison message, the live projection reports a lag until it has applied
// the backlog and dead-lettered the poison, then none (ready), although
// the read model's checkpoint is below the stream's last sequence.
func TestLiveProjectionIsReadyOnceCaughtUp(t *testing.T) {
	e := newEnv(t)
	w := newWorkload(5, 20)
	e.publishBulk(t, w, 3000)
	poison := e.publish(t, poisonMsg(w.sites[0], `{"id":"broken"`))[0]
	st, err := readstore.Open(storeConfig(filepath.Join(t.TempDir(), readstore.FileName)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p := New(st)
	if _, err := p.Lag(context.Background()); err == nil {
		t.Fatal("Lag before Register: want an error")
	}
	e.router(t, p)
	lag, err := p.Lag(context.Background())
	if err != nil || lag == 0 {
		t.Fatalf("lag at the start %d (%v), want a backlog", lag, err)
	}
	natstest.Eventually(t, 30*time.Second, func() error {
		lag, err := p.Lag(context.Background())
		if err != nil {
			return err
		}
		if lag != 0 {
			return fmt.Errorf("%d behind", lag)
		}
		return nil
	})
	if st.LastApplied() != poison-1 {
		t.Fatalf("applied up to %d, want %d", st.LastApplied(), poison-1)
	}
	if _, ok := e.deadLetters(t, Durable("test"))[poison]; !ok {
		t.Fatal("ready before the poison message was dead-lettered")
	}
	// One more event: lagging until applied.
	last := e.publish(t, e.eventMsg(t, w.next()))[0]
	waitApplied(t, p, last)
	if lag, err := p.Lag(context.Background()); err != nil || lag != 0 {
		t.Fatalf("lag %d (%v) after the last event was applied", lag, err)
	}
}

// TestLiveProjectionHoldsAtAnUnknownType: the live projection applies
// everything before an authentic event of a type this build does not know,
// skips nothing, and stays there (lagging, never ready), trying again.
func TestLiveProjectionHoldsAtAnUnknownType(t *testing.T) {
	e := newEnv(t)
	w := newWorkload(6, 5)
	e.publishBulk(t, w, 30)
	newer := e.publish(t, e.newerTypeMsg(t, w.next()))[0]
	e.publishBulk(t, w, 10)
	st, err := readstore.Open(storeConfig(filepath.Join(t.TempDir(), readstore.FileName)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p := New(st)
	e.router(t, p)
	waitApplied(t, p, newer-1)
	time.Sleep(500 * time.Millisecond) // several tries at RetryMaxInterval (100 ms here)
	if st.LastApplied() != newer-1 {
		t.Fatalf("read model at %d, want %d: right before the newer event", st.LastApplied(), newer-1)
	}
	if lag, err := p.Lag(context.Background()); err != nil || lag != 11 {
		t.Fatalf("lag %d (%v), want the newer event and the 10 after it", lag, err)
	}
	if n := len(e.deadLetters(t, Durable("test"))); n != 0 {
		t.Fatalf("%d dead letters: an authentic event was moved aside", n)
	}
}
