package readstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/projections"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

var (
	alice = events.Actor{Kind: events.ActorAdmin, ID: "alice@acme.example"}
	dev   = events.Actor{Kind: events.ActorDevice, ID: "device"}
)

// history builds records for sites in stream order: per site a generation,
// failures, a success, a reveal and a disable, interleaved between sites.
type history struct {
	seq  uint64
	recs []events.Record
}

func (h *history) add(site string, at time.Time, actor events.Actor, p events.Payload) events.Record {
	h.seq++
	r := events.Record{Seq: h.seq, Event: events.Event{ID: fmt.Sprintf("01J%023d", h.seq), Site: events.Site(site),
		OccurredAt: at, Actor: actor, Data: p}}
	h.recs = append(h.recs, r)
	return r
}

func scenario(h *history, site string, at time.Time, failures int) {
	h.add(site, at, alice, events.PasscodeGenerated{PasscodeID: site + "-p1", Hash: []byte("h"), HashKeyID: "k",
		Sealed: []byte("s"), SealKeyID: "k"})
	for i := 1; i <= failures; i++ {
		h.add(site, at.Add(time.Duration(i)*time.Second), dev, events.EnrollmentAttemptFailed{PasscodeID: site + "-p1",
			Source: events.Source{IP: fmt.Sprintf("10.0.0.%d", i)}, FailedAttempts: i, MaxFailedAttempts: 10,
			FailureWindow: events.Duration(time.Hour)})
	}
	h.add(site, at.Add(time.Minute), dev, events.EnrollmentAttemptSucceeded{PasscodeID: site + "-p1",
		Source: events.Source{IP: "10.9.9.9", DeviceID: "D1", Platform: "ios"}})
	h.add(site, at.Add(2*time.Minute), alice, events.PasscodeRevealed{PasscodeID: site + "-p1"})
	h.add(site, at.Add(3*time.Minute), alice, events.PasscodeDisabled{PasscodeID: site + "-p1", Reason: events.DisableManual})
}

func open(t testing.TB, path string, mod ...func(*Config)) *Store {
	t.Helper()
	cfg := Config{Path: path, Defaults: domain.DefaultPolicy()}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func TestApplyThenQuery(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), FileName))
	defer s.Close()
	var h history
	scenario(&h, "acme", t0, 3)
	scenario(&h, "beta", t0, 1)
	if err := s.Apply(h.recs...); err != nil {
		t.Fatal(err)
	}
	if got := s.LastApplied(); got != h.seq {
		t.Fatalf("last applied %d, want %d", got, h.seq)
	}
	d, ok := s.State("acme", t0.Add(10*time.Minute))
	if !ok || d.Status != domain.StatusDisabled || d.FailedAttempts != 3 || d.GeneratedBy != alice.ID ||
		d.DisabledBy != alice.ID || d.Seq != 7 {
		t.Fatalf("acme state %+v", d)
	}
	if d, ok := s.State("nobody", t0); ok || d.Status != domain.StatusNone {
		t.Fatalf("unknown site: %+v %v", d, ok)
	}
	if got := s.Sites(); !reflect.DeepEqual(got, []string{"acme", "beta"}) {
		t.Fatalf("sites %v", got)
	}
	if got := s.States(t0, func(site string) bool { return site == "beta" }); len(got) != 1 || got[0].Site != "beta" {
		t.Fatalf("states %+v", got)
	}

	entries, next, err := s.Audit("acme", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []events.Type{events.TypePasscodeDisabled, events.TypePasscodeRevealed, events.TypeEnrollmentAttemptSucceeded,
		events.TypeEnrollmentAttemptFailed, events.TypeEnrollmentAttemptFailed, events.TypeEnrollmentAttemptFailed,
		events.TypePasscodeGenerated}
	if len(entries) != len(wantTypes) || next != 0 {
		t.Fatalf("audit: %d entries, next %d", len(entries), next)
	}
	for i, e := range entries {
		if e.Type != wantTypes[i] || e.Summary == "" || e.Seq != uint64(7-i) {
			t.Errorf("entry %d: %+v", i, e)
		}
	}
	if entries[3].Summary != "Wrong passcode from 10.0.0.3 (3 of 10 in 1h0m0s)" {
		t.Errorf("summary %q", entries[3].Summary)
	}

	all, err := s.Attempts("acme", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 || all[0].Outcome != projections.OutcomeSucceeded || all[0].Source.Platform != "ios" ||
		all[1].Source.IP != "10.0.0.3" || all[3].Source.IP != "10.0.0.1" || all[1].Seq != 4 {
		t.Fatalf("attempts %+v", all)
	}
	failed, err := s.Attempts("acme", projections.OutcomeFailed, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 2 || failed[0].Outcome != projections.OutcomeFailed || failed[0].FailedAttempts != 3 ||
		failed[1].FailedAttempts != 2 {
		t.Fatalf("failed attempts %+v", failed)
	}
	if ok, _ := s.Attempts("acme", projections.OutcomeSucceeded, 100); len(ok) != 1 || ok[0].Seq != 5 {
		t.Fatalf("succeeded attempts %+v", ok)
	}
	if beta, _ := s.Attempts("beta", "", 100); len(beta) != 2 {
		t.Fatalf("beta attempts %+v", beta)
	}
}

func TestAttemptsLookThroughABoundedTail(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), FileName), func(c *Config) { c.AttemptsScanLimit = 4 })
	defer s.Close()
	var h history
	scenario(&h, "acme", t0, 3)
	if err := s.Apply(h.recs...); err != nil {
		t.Fatal(err)
	}
	// The 4 newest events: disable, reveal, success, failure 3.
	got, err := s.Attempts("acme", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Outcome != projections.OutcomeSucceeded || got[1].FailedAttempts != 3 {
		t.Fatalf("attempts %+v", got)
	}
}

func TestAuditPagingHasNoGapsOrRepeats(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), FileName))
	defer s.Close()
	var h history
	// Interleave three sites so that other sites' keys sit on both sides.
	for i := range 5 {
		for _, site := range []string{"a", "acme", "acme-2"} {
			scenario(&h, site, t0.Add(time.Duration(i)*time.Hour), 2)
		}
	}
	if err := s.Apply(h.recs...); err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i := len(h.recs) - 1; i >= 0; i-- {
		if h.recs[i].Event.Site == "acme" {
			want = append(want, h.recs[i].Seq)
		}
	}
	var got []uint64
	cursor := uint64(0)
	for pages := 0; ; pages++ {
		if pages > len(want) {
			t.Fatal("paging does not end")
		}
		entries, next, err := s.Audit("acme", cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			got = append(got, e.Seq)
		}
		if next == 0 {
			break
		}
		if len(entries) != 2 || next != entries[1].Seq {
			t.Fatalf("page of %d entries with next %d", len(entries), next)
		}
		cursor = next
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("paged seqs\n got %v\nwant %v", got, want)
	}
}

func TestReapplyIsIdempotent(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), FileName))
	defer s.Close()
	var h history
	scenario(&h, "acme", t0, 4)
	if err := s.Apply(h.recs[:3]...); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s)
	if err := s.Apply(h.recs[:3]...); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, s); !reflect.DeepEqual(before, after) {
		t.Fatalf("re-applying changed the read model")
	}
	// Overlapping batches apply only the new part.
	if err := s.Apply(h.recs...); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(h.recs[2:]...); err != nil {
		t.Fatal(err)
	}
	entries, _, _ := s.Audit("acme", 0, 100)
	if len(entries) != len(h.recs) {
		t.Fatalf("%d audit entries, want %d", len(entries), len(h.recs))
	}
	if d, _ := s.State("acme", t0.Add(5*time.Minute)); d.FailedAttempts != 4 {
		t.Fatalf("failed attempts %d after re-apply, want 4", d.FailedAttempts)
	}
}

func TestFailedApplyChangesNothing(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), FileName))
	defer s.Close()
	var h history
	scenario(&h, "acme", t0, 2)
	bad := h.recs[len(h.recs)-1]
	bad.Seq, bad.Event.Data = 99, nil
	if err := s.Apply(append(h.recs, bad)...); err == nil {
		t.Fatal("a record without payload was applied")
	}
	if s.LastApplied() != 0 || len(s.Sites()) != 0 {
		t.Fatalf("a failed batch left state: last %d, sites %v", s.LastApplied(), s.Sites())
	}
	if entries, _, _ := s.Audit("acme", 0, 10); len(entries) != 0 {
		t.Fatalf("a failed batch left %d audit entries", len(entries))
	}
}

// dump is everything a store answers, for equality checks.
type dump struct {
	Last     uint64
	States   []projections.StateDoc
	Audit    map[string][]projections.AuditEntry
	Attempts map[string][]projections.AttemptEntry
}

func snapshot(t testing.TB, s *Store) dump {
	t.Helper()
	d := dump{Last: s.LastApplied(), States: s.States(t0.Add(time.Hour), nil),
		Audit: map[string][]projections.AuditEntry{}, Attempts: map[string][]projections.AttemptEntry{}}
	for _, site := range s.Sites() {
		var cursor uint64
		for {
			page, next, err := s.Audit(site, cursor, 50)
			if err != nil {
				t.Fatal(err)
			}
			d.Audit[site] = append(d.Audit[site], page...)
			if next == 0 {
				break
			}
			cursor = next
		}
		a, err := s.Attempts(site, "", 10000)
		if err != nil {
			t.Fatal(err)
		}
		d.Attempts[site] = a
	}
	return d
}

func TestReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("nosync=%v", noSync), func(t *testing.T) {
			path := path + fmt.Sprint(noSync)
			mod := func(c *Config) { c.NoSync = noSync }
			s := open(t, path, mod)
			var h history
			for i := range 20 {
				scenario(&h, fmt.Sprintf("site-%d", i), t0, i%4)
			}
			if err := s.Apply(h.recs[:40]...); err != nil {
				t.Fatal(err)
			}
			if err := s.Apply(h.recs[40:]...); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open(t, path, mod)
			defer s.Close()
			after := snapshot(t, s)
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("reopened read model differs")
			}
			if after.Last != h.seq || len(after.States) != 20 {
				t.Fatalf("reopened: last %d, %d states", after.Last, len(after.States))
			}
		})
	}
}

func TestUncleanShutdownAfterOSRestartIsDetected(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	boot := "boot-1"
	mod := func(c *Config) { c.NoSync = true; c.BootID = func() string { return boot } }
	s := open(t, path, mod)
	var h history
	scenario(&h, "acme", t0, 1)
	if err := s.Apply(h.recs...); err != nil {
		t.Fatal(err)
	}
	// A process crash: the file is closed without Close.
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	// Same boot: the page cache held every write, the file is good.
	s = open(t, path, mod)
	if s.LastApplied() != h.seq {
		t.Fatalf("last applied %d after a process crash, want %d", s.LastApplied(), h.seq)
	}
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	// Another boot: the unsynced writes may be lost or torn.
	boot = "boot-2"
	cfg := Config{Path: path, Defaults: domain.DefaultPolicy()}
	mod(&cfg)
	if _, err := Open(cfg); !errors.Is(err, ErrUnclean) {
		t.Fatalf("open after OS restart: %v, want ErrUnclean", err)
	}
	// Also when the next opener syncs: the file's unsynced writes are the problem.
	cfg.NoSync = false
	if _, err := Open(cfg); !errors.Is(err, ErrUnclean) {
		t.Fatalf("synced open after OS restart: %v, want ErrUnclean", err)
	}
	// A synced store left open is fine after a restart.
	syncedPath := filepath.Join(t.TempDir(), FileName)
	synced := open(t, syncedPath, func(c *Config) { c.BootID = func() string { return boot } })
	if err := synced.db.Close(); err != nil {
		t.Fatal(err)
	}
	boot = "boot-9"
	synced = open(t, syncedPath, mod)
	synced.Close()
	// A clean close clears the marker.
	boot = "boot-1"
	s = open(t, path, mod)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	boot = "boot-3"
	s = open(t, path, mod)
	s.Close()
}

func TestOpenRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := writeFile(path, []byte("this is not a bbolt file, not at all; it is long enough to be read")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Path: path, Defaults: domain.DefaultPolicy()}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
}

func TestWaitFor(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), FileName))
	defer s.Close()
	var h history
	scenario(&h, "acme", t0, 1)
	done := make(chan error, 1)
	go func() { done <- s.WaitFor(context.Background(), 3) }()
	if err := s.Apply(h.recs[:2]...); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("WaitFor(3) returned at seq 2: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := s.Apply(h.recs[2:]...); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitFor not released by Apply")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := s.WaitFor(ctx, 1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want deadline exceeded", err)
	}
	go func() { done <- s.WaitFor(context.Background(), 1000) }()
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("got %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitFor not released by Close")
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{AttemptsScanLimit: -1}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"path", "attempts scan limit", "defaults"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestMemoryPerSite measures the heap that the cached states take once
// loaded, per site, for three kinds of site, and fails when a typical site
// (a generation, 3 failures from 3 sources, a success, a reveal, a disable)
// is over budget. Audit entries and attempts are not in memory.
func TestMemoryPerSite(t *testing.T) {
	if testing.Short() {
		t.Skip("measures memory")
	}
	profiles := []struct {
		name     string
		sites    int
		failures int
		budget   float64
	}{
		{"generated only", 2000, 0, 0},
		{"typical: 3 failures from 3 sources", 10000, 3, 2048},
		{"busy: 9 failures from 9 sources", 2000, 9, 0},
	}
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			s := open(t, path, func(c *Config) { c.NoSync = true })
			var h history
			for i := range p.sites {
				site := fmt.Sprintf("site-%05d", i)
				if p.failures == 0 {
					h.add(site, t0, alice, events.PasscodeGenerated{PasscodeID: site + "-p1", Hash: []byte("h"),
						HashKeyID: "k", Sealed: []byte("s"), SealKeyID: "k"})
					continue
				}
				scenario(&h, site, t0, p.failures)
			}
			if err := s.Apply(h.recs...); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			h.recs, s = nil, nil
			var m0, m1 runtime.MemStats
			// Twice: the first GC only moves sync.Pool contents to the victim cache.
			runtime.GC()
			runtime.GC()
			runtime.ReadMemStats(&m0)
			loaded := open(t, path, func(c *Config) { c.NoSync = true })
			runtime.GC()
			runtime.GC()
			runtime.ReadMemStats(&m1)
			defer loaded.Close()
			per := (float64(m1.HeapAlloc) - float64(m0.HeapAlloc)) / float64(p.sites)
			t.Logf("heap per site: %.0f bytes (%d sites)", per, p.sites)
			if p.budget > 0 && per > p.budget {
				t.Errorf("heap per site %.0f bytes, budget %.0f", per, p.budget)
			}
			if d, _ := loaded.State("site-00042", t0.Add(10*time.Minute)); d.FailedAttempts != p.failures {
				t.Fatalf("state after load: %+v", d)
			}
		})
	}
}

// BenchmarkApplyOne measures one record per transaction, the live path, with
// and without fsync.
func BenchmarkApplyOne(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		b.Run(fmt.Sprintf("nosync=%v", noSync), func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), FileName), func(c *Config) { c.NoSync = noSync })
			defer s.Close()
			var h history
			for i := 0; h.seq < uint64(b.N); i++ {
				scenario(&h, fmt.Sprintf("site-%d", i%100), t0, 5)
			}
			b.ResetTimer()
			for i := range b.N {
				if err := s.Apply(h.recs[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApplyBatch measures batches of 1000 records, the rebuild path.
func BenchmarkApplyBatch(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), FileName), func(c *Config) { c.NoSync = true })
	defer s.Close()
	var h history
	for i := 0; h.seq < uint64(b.N); i++ {
		scenario(&h, fmt.Sprintf("site-%d", i%1000), t0, 5)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i += 1000 {
		if err := s.Apply(h.recs[i:min(i+1000, b.N)]...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func TestOpenOfALockedFileIsNotCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s := open(t, path)
	defer s.Close()
	_, err := Open(Config{Path: path, Defaults: domain.DefaultPolicy()})
	if err == nil || errors.Is(err, ErrCorrupt) {
		t.Fatalf("second open of a locked file: %v, want a non-corruption error", err)
	}
}
