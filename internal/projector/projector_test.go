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

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/consume"
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
	if err := p.Register(r, Durable("test")); err != nil {
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
	if err := p.WaitFor(ctx, seq); err != nil {
		t.Fatalf("live projection did not reach seq %d: %v", seq, err)
	}
}

// TestRebuildEqualsLive runs the live consumer over a mixed workload with
// poison messages, rebuilds from sequence 1 into another file, and compares
// the two read models entry for entry; then swaps the rebuilt one in and
// checks that live events keep flowing into it.
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

	// Swap the rebuilt model in while events keep coming.
	e.publishBulk(t, w, 50)
	old, _, err := p.Swap(ctx, e.js, rebuilt, e.cfg(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	if old != live {
		t.Fatal("swap did not return the previous store")
	}
	last = e.publish(t, e.eventMsg(t, w.next()))[0]
	waitApplied(t, p, last)
	if p.Store() != rebuilt || rebuilt.LastApplied() != last {
		t.Fatalf("after swap the current store is at %d, want %d", p.Store().LastApplied(), last)
	}
	// The old store stopped receiving events at the swap.
	if live.LastApplied() >= last {
		t.Fatalf("old store still fed after the swap")
	}
	nowAfter := w.at.Add(time.Minute)
	fresh, _, err := Rebuild(ctx, e.js, storeConfig(""), filepath.Join(dir, "fresh.db"), e.cfg(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	compareDumps(t, snapshot(t, rebuilt, nowAfter), snapshot(t, fresh, nowAfter))
	defer rebuilt.Close()
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

func TestWaitForFollowsASwap(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	ctx := context.Background()
	a, _, err := OpenStore(ctx, e.js, storeConfig(filepath.Join(dir, "a.db")), e.cfg(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	p := New(a)
	w := newWorkload(4, 3)
	e.publishBulk(t, w, 5)
	done := make(chan error, 1)
	go func() {
		c, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		done <- p.WaitFor(c, 5)
	}()
	b, _, err := Rebuild(ctx, e.js, storeConfig(""), filepath.Join(dir, "b.db"), e.cfg(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	old, _, err := p.Swap(ctx, e.js, b, e.cfg(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("WaitFor: %v", err)
			}
			return nil
		default:
			return errors.New("waiter not released")
		}
	})
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

// TestFailedCommitKeepsWhatWasStaged: a commit that fails applies nothing
// and keeps the staged events for the next commit, which applies them once
// even when a redelivery staged some of them again.
func TestFailedCommitKeepsWhatWasStaged(t *testing.T) {
	dir := t.TempDir()
	first, err := readstore.Open(storeConfig(filepath.Join(dir, "first.db")))
	if err != nil {
		t.Fatal(err)
	}
	p := New(first)
	w := newWorkload(3, 2)
	var recs []events.Record
	for i := range 5 {
		recs = append(recs, events.Record{Seq: uint64(i + 1), Event: w.next()})
	}
	ctx := context.Background()
	for _, r := range recs[:3] {
		if err := p.Stage(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(ctx); err == nil {
		t.Fatal("commit to a closed store succeeded")
	}
	second, err := readstore.Open(storeConfig(filepath.Join(dir, "second.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = second.Close() }()
	p.mu.Lock()
	p.store = second // as Swap would, without a stream to catch up from
	p.mu.Unlock()
	// The subscriber tries the commit again, handing nothing over meanwhile.
	if err := p.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := second.LastApplied(); got != 3 {
		t.Fatalf("applied up to %d after the retried commit, want 3", got)
	}
	// A redelivery of what was committed, then new events.
	for _, r := range recs {
		if err := p.Stage(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := second.LastApplied(); got != 5 {
		t.Fatalf("applied up to %d, want 5", got)
	}
	if d := snapshot(t, second, w.at.Add(time.Minute)); d.Events != 5 {
		t.Fatalf("%d audit entries, want each of the 5 events once", d.Events)
	}
	if err := p.Commit(ctx); err != nil || len(p.staged) != 0 {
		t.Fatalf("a commit with nothing staged: %v, %d staged", err, len(p.staged))
	}
}
