package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/alerts"
	"github.com/enrollgate/enrollgate/internal/projector"
	"github.com/enrollgate/enrollgate/internal/readstore"
	"github.com/enrollgate/enrollgate/internal/verifywire"
)

// Scenario sizes.
const (
	sites1k      = 1000      // S1, S2, S8
	zipfSites    = 10_000    // S4
	frontends    = 16        // S2, S4, S8-S2, S9: the most concurrent frontends
	hotFrontends = 4         // S3
	lockoutAt    = 10        // S5's per-site threshold, and S9's locked site's
	memorySites  = 1_000_000 // S7: the size its target is set at, and the full run's
)

// row is one line of the table: a raw baseline or a scenario, measured once
// per round.
type row struct {
	ID       string
	Group    string // "raw", "bare" or S1..S9: what -scenarios selects
	Title    string
	Baseline string // the raw row the rate ratio is taken to
	P99Base  string // the raw row the p99 ratio is taken to; empty: Baseline
	// Beside are the rows selected with this one: the bare shape of a
	// verify, the ceiling a service row is read against.
	Beside []string
	Target target
	// Once: measured in the last round only. S7 is a memory figure, and its
	// appends on S4's sites make the main Service's cached aggregates of
	// those sites stale, which would add catch-up loads to later S4 rounds.
	Once  bool
	Stack *stack // drained after the measurement; nil for raw rows
	run   func(ctx context.Context, round int) (sample, error)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func (r *row) p99Base() string {
	if r.P99Base != "" {
		return r.P99Base
	}
	return r.Baseline
}

// runner holds the environments the rows run in.
type runner struct {
	opt        options
	log        func(format string, args ...any)
	main       *stack
	sync       *stack // SyncAlways, for S8
	replay     *replayEnv
	raw        *rawClients // on main's server
	bare       *bareEnv    // on main's server
	flood      *floodSites // S9's, on main's stack
	rawSync    *rawClients // on sync's server
	fronts     map[*stack][]frontend
	hfronts    []frontend
	httpClient *http.Client
	sites      map[*stack]*siteSet // the 1,000 sites of S1/S2 (S8: on sync)
	zsites     *siteSet            // S4's 10,000 sites, extended for S7
	gen        *attemptGen
	seed       atomic.Uint64
}

func (r *runner) nextSeed() uint64 { return r.seed.Add(1) }

// rows returns every row in the order a round runs them: each scenario right
// after the baseline it is compared with.
func (r *runner) rows() []*row {
	d := r.opt.Duration
	var rows []*row
	add := func(x *row) { rows = append(rows, x) }
	rawRow := func(id, title string, clients, subjects int, on func() *rawClients) *row {
		group := "raw"
		if strings.HasPrefix(id, "S8-") {
			group = "S8" // on the sync-always server, which only S8 sets up
		}
		return &row{ID: id, Group: group, Title: title, run: func(context.Context, int) (sample, error) {
			return on().sync(clients, subjects, d, r.nextSeed())
		}}
	}
	mainRaw := func() *rawClients { return r.raw }
	syncRaw := func() *rawClients { return r.rawSync }
	verifyRow := func(id, group, title, base string, t target, st func() *stack, http bool, n int,
		pick func(rng *rand.Rand) func() int) *row {
		x := &row{ID: id, Group: group, Title: title, Baseline: base, Target: t}
		x.run = func(context.Context, int) (sample, error) {
			s := st()
			fr := r.fronts[s][:n]
			if http {
				fr = r.hfronts[:n]
			}
			ss := r.sites[s]
			if group == "S4" {
				ss = r.zsites
			}
			before := s.store.snapshot()
			smp, err := verifyLoad(fr, d, ss, r.gen, r.nextSeed(), pick)
			smp.Extra = s.store.snapshot().minus(before).extra(smp.Ops)
			return smp, err
		}
		return x
	}
	onMain := func() *stack { return r.main }
	onSync := func() *stack { return r.sync }
	p99x3 := func(ratio float64) target { return target{MinRatio: ratio, MaxP99Ratio: 3} }
	uni := uniform(sites1k)
	bareRows := func(clients int, base string) []string {
		var ids []string
		for _, v := range bareVariants {
			id := fmt.Sprintf("bare%s-c%d-s1k", v.suffix, clients)
			add(&row{ID: id, Group: "bare", Baseline: base,
				Title: fmt.Sprintf("bare verify shape%s, %s, 1,000 sites", v.title, plural(clients, "client")),
				run: func(ctx context.Context, _ int) (sample, error) {
					return r.bare.run(ctx, v, clients, sites1k, d, r.nextSeed())
				}})
			ids = append(ids, id)
		}
		return ids
	}

	add(rawRow("raw-sync-c1-s1k", "raw sync publish, 1 client, 1,000 subjects", 1, sites1k, mainRaw))
	add(&row{ID: "raw-expect-c1-s1k", Group: "raw", Title: "raw sync publish + msg ID + expected last subject seq, 1 client, 1,000 subjects",
		run: func(context.Context, int) (sample, error) { return r.raw.syncExpect(sites1k, d, r.nextSeed()) }})
	bare1 := bareRows(1, "raw-sync-c1-s1k")
	for _, x := range []*row{
		verifyRow("S1-nats", "S1", "S1 verify over NATS, 1,000 sites, 1 frontend", "raw-sync-c1-s1k", p99x3(0.30), onMain, false, 1, uni),
		verifyRow("S1-http", "S1", "S1 verify over HTTP, 1,000 sites, 1 frontend", "raw-sync-c1-s1k", p99x3(0.30), onMain, true, 1, uni),
	} {
		x.Beside = bare1
		add(x)
	}
	add(rawRow("raw-sync-c16-s1k", "raw sync publish, 16 clients, 1,000 subjects", frontends, sites1k, mainRaw))
	bare16 := bareRows(frontends, "raw-sync-c16-s1k")
	for _, x := range []*row{
		verifyRow("S2-nats", "S2", "S2 verify over NATS, 1,000 sites, 16 frontends", "raw-sync-c16-s1k", p99x3(0.33), onMain, false, frontends, uni),
		verifyRow("S2-http", "S2", "S2 verify over HTTP, 1,000 sites, 16 frontends", "raw-sync-c16-s1k", p99x3(0.33), onMain, true, frontends, uni),
	} {
		x.Beside = bare16
		add(x)
	}
	add(rawRow("raw-sync-c1-s1", "raw sync publish, 1 client, 1 subject", 1, 1, mainRaw))
	add(rawRow("raw-sync-c4-s1", "raw sync publish, 4 clients, 1 subject", hotFrontends, 1, mainRaw))
	add(r.hotRow())
	add(rawRow("raw-sync-c16-s1", "raw sync publish, 16 clients, 1 subject", frontends, 1, mainRaw))
	add(rawRow("raw-sync-c4-s1k", "raw sync publish, 4 clients, 1,000 subjects", hotFrontends, sites1k, mainRaw))
	add(verifyRow("S4-nats", "S4", "S4 verify over NATS, Zipf(1.1) over 10,000 sites, 16 frontends", "raw-sync-c16-s1k",
		target{MaxP99Ratio: 3}, onMain, false, frontends, zipf(zipfSites)))
	add(&row{ID: "raw-async-c1-s1k", Group: "raw", Title: fmt.Sprintf("raw async publish, 1 client, %d in flight, 1,000 subjects", rawAsyncAhead),
		run: func(context.Context, int) (sample, error) { return r.raw.async(sites1k, d, r.nextSeed()) }})
	add(&row{ID: "S5-lockout", Group: "S5", Title: fmt.Sprintf("S5 lockout: %d-th failure's verdict to alert on a core subscription", lockoutAt),
		Target: target{MaxP99: 50 * time.Millisecond}, run: r.lockouts})
	add(&row{ID: "raw-replay", Group: "raw", Title: fmt.Sprintf("raw ordered-consumer replay, %d events", r.opt.RebuildEvents),
		run: func(ctx context.Context, _ int) (sample, error) {
			return rawReplay(ctx, r.replay.js, "ENROLLGATE_EVENTS", r.replay.n)
		}})
	add(&row{ID: "S6-rebuild", Group: "S6", Title: fmt.Sprintf("S6 projection rebuild (decode, fold, bbolt), %d events, 1,000 sites", r.opt.RebuildEvents),
		Baseline: "raw-replay", Target: target{MinRatio: 0.65}, run: r.rebuild})
	add(&row{ID: "S7-memory", Group: "S7", Title: fmt.Sprintf("S7 aggregate cache heap after one verify per site, %d sites", r.opt.MemorySites),
		Once: true, Target: target{ExtraName: "bytes_per_site", ExtraMax: 1024, AtOps: memorySites}, run: r.memory})
	add(rawRow("S8-raw-sync-c1-s1k", "S8 raw sync publish, sync always, 1 client, 1,000 subjects", 1, sites1k, syncRaw))
	add(verifyRow("S8-S1-nats", "S8", "S8 = S1 with sync always", "S8-raw-sync-c1-s1k", target{MinRatio: 0.9}, onSync, false, 1, uni))
	add(rawRow("S8-raw-sync-c16-s1k", "S8 raw sync publish, sync always, 16 clients, 1,000 subjects", frontends, sites1k, syncRaw))
	add(verifyRow("S8-S2-nats", "S8", "S8 = S2 with sync always", "S8-raw-sync-c16-s1k", target{MinRatio: 0.9}, onSync, false, frontends, uni))
	add(&row{ID: "raw-reqrep-c16", Group: "raw", Title: "raw core NATS request/reply (constant reply), 16 clients",
		run: func(context.Context, int) (sample, error) { return r.raw.requestReply(frontends, d) }})
	s9 := target{MinRatio: 0.5, ExtraName: "appends_per_op", ExtraMax: 0}
	add(&row{ID: "S9-locked", Group: "S9", Title: "S9 flood on a locked site over NATS, 16 frontends (refused, nothing stored)",
		Baseline: "raw-reqrep-c16", Target: s9, run: func(context.Context, int) (sample, error) { return r.floodLocked(d) }})
	add(&row{ID: "S9-throttled", Group: "S9", Title: "S9 flood from 16 throttled sources over NATS, 16 frontends (refused, nothing stored)",
		Baseline: "raw-reqrep-c16", Target: s9, run: func(context.Context, int) (sample, error) { return r.floodThrottled(d) }})
	for _, x := range rows {
		switch {
		case x.Group == "S8" && x.Baseline != "":
			x.Stack = r.sync
		case x.Baseline != "" && x.Group != "S6" && x.Group != "bare":
			x.Stack = r.main
		}
	}
	return rows
}

// hotRow is S3: a fresh site per round (so that its wrong attempts stay
// below the threshold), 4 frontends, conflicts counted by the store wrapper.
func (r *runner) hotRow() *row {
	x := &row{ID: "S3-nats", Group: "S3", Title: "S3 verify over NATS, one hot site, 4 frontends",
		Baseline: "raw-sync-c1-s1", P99Base: "raw-sync-c4-s1",
		Target: target{MinRatio: 0.5, MaxP99Ratio: 3, ExtraName: "conflicts_per_success", ExtraMax: 0.01}}
	x.run = func(ctx context.Context, round int) (sample, error) {
		ss := &siteSet{}
		if err := ss.generate(ctx, r.main.svc, fmt.Sprintf("hot-r%d", round), 1, 1); err != nil {
			return sample{}, err
		}
		before := r.main.store.snapshot()
		s, err := verifyLoad(r.fronts[r.main][:hotFrontends], r.opt.Duration, ss, r.gen, r.nextSeed(), fixed(0))
		c := r.main.store.snapshot().minus(before)
		s.Extra = c.extra(s.Ops)
		s.Extra["conflicts_per_success"] = float64(c.conflicts) / float64(max(c.appends, 1))
		return s, err
	}
	return x
}

// lockouts is S5: per lockout a fresh site with threshold 10, nine wrong
// attempts, then the timed window from the tenth's verdict (as the frontend
// gets it) to the alert on a core NATS subscription of enrollgate.alerts.>.
func (r *runner) lockouts(ctx context.Context, round int) (sample, error) {
	st := r.main
	f := r.fronts[st][0]
	var s sample
	for k := range r.opt.Lockouts {
		site := fmt.Sprintf("lock-r%d-%04d", round, k)
		res, err := st.svc.GeneratePasscode(ctx, handlers.GeneratePasscode{Site: events.Site(site), Actor: benchAdmin})
		if err != nil {
			return s, err
		}
		if _, err := st.svc.ChangeLockoutPolicy(ctx, handlers.ChangeLockoutPolicy{Site: events.Site(site), Actor: benchAdmin,
			MaxFailedAttempts: lockoutAt, FailureWindow: time.Hour}); err != nil {
			return s, err
		}
		var t0 time.Time
		for j := 1; j <= lockoutAt; j++ {
			reply, err := f.verify(site, r.gen.body("wrong-"+res.Passcode.Plain()))
			if err != nil {
				return s, fmt.Errorf("lockout %s attempt %d: %w", site, j, err)
			}
			if reply.OK || reply.Reason != string(domain.ReasonWrongPasscode) {
				return s, fmt.Errorf("lockout %s attempt %d: got %+v, want wrong_passcode", site, j, reply)
			}
			t0 = time.Now()
		}
		want := alerts.Subject(site, alerts.KindPasscodeLockout)
		for {
			m, err := st.alerts.NextMsg(10 * time.Second)
			if err != nil {
				return s, fmt.Errorf("no lockout alert for %s: %w", site, err)
			}
			if m.Subject == want {
				break
			}
		}
		s.Lat = append(s.Lat, time.Since(t0))
		s.Ops++
	}
	s.finish(0)
	return s, nil
}

// rebuild is S6: projector.Rebuild of the replay environment's stream into
// a fresh bbolt file, as `enrollgate projections rebuild` does.
func (r *runner) rebuild(ctx context.Context, round int) (sample, error) {
	path := filepath.Join(r.replay.dir, fmt.Sprintf("rebuild-%d.db", round))
	start := time.Now()
	st, rep, err := projector.Rebuild(ctx, r.replay.js, readstore.Config{Defaults: benchPolicy(), NoSync: true}, path, projector.Config{Auth: r.replay.auth})
	if err != nil {
		return sample{}, err
	}
	elapsed := time.Since(start)
	cerr := st.Close()
	_ = os.Remove(path)
	if rep.Applied != r.replay.n || len(rep.Poison) > 0 {
		return sample{}, fmt.Errorf("rebuild applied %d with %d poison, want %d", rep.Applied, len(rep.Poison), r.replay.n)
	}
	s := sample{Ops: int(rep.Applied)}
	s.finish(elapsed)
	return s, cerr
}

// memory is S7: a fresh Service verifies once on each of MemorySites sites
// (loading each from the stream), and the heap it retains is measured as the
// difference between the live heap with it and without it, after GC, with
// the consumers drained. The server, the projections and the bench's own
// data are in both figures and cancel out.
func (r *runner) memory(ctx context.Context, _ int) (sample, error) {
	st := r.main
	n := r.opt.MemorySites
	ss := r.zsites
	// Every site stays cached, so that the heap is n sites' worth: with the
	// default bound a larger n would measure the bound instead.
	svc, err := st.newService(n)
	if err != nil {
		return sample{}, err
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, frontends)
	start := time.Now()
	for w := range frontends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(r.nextSeed(), uint64(w)))
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				body, right := r.gen.next(ss, i, rng)
				cmd, err := verifywire.DecodeRequest(events.Site(ss.names[i]), body)
				if err != nil {
					errs[w] = err
					return
				}
				res, err := svc.VerifyPasscode(ctx, cmd)
				if err != nil || res.OK != right {
					errs[w] = errors.Join(err, fmt.Errorf("verify %s: ok=%v want %v", ss.names[i], res.OK, right))
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return sample{}, err
	}
	if err := st.drain(ctx); err != nil {
		return sample{}, err
	}
	with := liveHeap()
	if dir := r.opt.CPUProfile; dir != "" {
		if err := writeHeapProfile(filepath.Join(dir, "S7-heap.prof")); err != nil {
			return sample{}, err
		}
	}
	runtime.KeepAlive(svc)
	svc = nil // dropped so that the next GC frees its cache
	without := liveHeap()
	s := sample{Ops: n, Extra: map[string]float64{
		"bytes_per_site": float64(int64(with)-int64(without)) / float64(n),
		"cold_verify_ms": ms(elapsed) / float64(n) * frontends,
	}}
	return s, nil
}

func writeHeapProfile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.WriteHeapProfile(f)
}

// liveHeap returns the heap in use after two full collections.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
