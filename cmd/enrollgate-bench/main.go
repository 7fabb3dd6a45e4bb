package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// options are the flags; they are also written to the JSON file.
type options struct {
	Quick         bool          `json:"quick"`
	Rounds        int           `json:"rounds"`
	Duration      time.Duration `json:"duration_ns"`
	Scenarios     string        `json:"scenarios"`
	Out           string        `json:"out"`
	CPUProfile    string        `json:"cpuprofile,omitempty"`
	RebuildEvents int           `json:"rebuild_events"`
	MemorySites   int           `json:"memory_sites"`
	Lockouts      int           `json:"lockouts_per_round"`
	LogLevel      string        `json:"log_level"`
	Keep          bool          `json:"keep"`
	Consumers     bool          `json:"consumers"`
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("enrollgate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.Quick, "quick", false, "small sizes and short measurements: the whole run takes under a minute")
	fs.IntVar(&o.Rounds, "rounds", 0, "interleaved rounds (default 5, quick 3)")
	fs.DurationVar(&o.Duration, "duration", 0, "length of one load measurement (default 3s, quick 300ms)")
	fs.StringVar(&o.Scenarios, "scenarios", "all", "comma-separated groups to run: raw,bare,S1,...,S9 or all (a scenario's baselines and the bare shape beside it always run)")
	fs.StringVar(&o.Out, "out", "bench-results.json", "JSON results file")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "directory for one CPU profile per row, taken in the last round")
	fs.IntVar(&o.RebuildEvents, "rebuild-events", 0, "S6 stream length (default 1,000,000, quick 50,000)")
	fs.IntVar(&o.MemorySites, "memory-sites", 0, "S7 sites (default 1,000,000, the target's size; quick 10,000)")
	fs.IntVar(&o.Lockouts, "lockouts", 0, "S5 lockouts per round (default 40, quick 10)")
	fs.StringVar(&o.LogLevel, "log-level", "warn", "level of the service's own log, on stderr")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temporary JetStream stores")
	fs.BoolVar(&o.Consumers, "consumers", true, "run the projections, saga and alert publisher beside the service, as production does (false: the write path alone, for diagnosis; S5 then fails)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	def := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if o.Quick {
				*v = quick
			}
		}
	}
	def(&o.Rounds, 5, 3)
	def(&o.RebuildEvents, 1_000_000, 50_000)
	def(&o.MemorySites, memorySites, zipfSites)
	def(&o.Lockouts, 40, 10)
	if o.Duration == 0 {
		o.Duration = 3 * time.Second
		if o.Quick {
			o.Duration = 300 * time.Millisecond
		}
	}
	var errs []error
	if o.Rounds < 1 || o.Duration <= 0 || o.RebuildEvents < 1 || o.MemorySites < 1 || o.Lockouts < 1 {
		errs = append(errs, errors.New("rounds, duration, rebuild-events, memory-sites and lockouts must be positive"))
	}
	if o.MemorySites < zipfSites {
		errs = append(errs, fmt.Errorf("memory-sites must be at least %d (S4's sites are reused)", zipfSites))
	}
	return o, errors.Join(errs...)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "enrollgate-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opt, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	level, err := zerolog.ParseLevel(opt.LogLevel)
	if err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr}).Level(level).With().Timestamp().Logger()
	progress := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
	}
	began := time.Now()

	r := &runner{opt: opt, log: progress, fronts: map[*stack][]frontend{}, sites: map[*stack]*siteSet{},
		gen: &attemptGen{run: fmt.Sprintf("b%d", began.Unix())}}
	selected, groups, err := selectRows(r.rows(), opt.Scenarios)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "enrollgate-bench-*")
	if err != nil {
		return err
	}
	if !opt.Keep {
		defer os.RemoveAll(dir)
	}
	defer r.close()
	if err := r.setup(ctx, dir, groups, log); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	progress("setup done in %s", time.Since(began).Round(time.Millisecond))

	var rows []*row
	for _, x := range r.rows() {
		if selected[x.ID] {
			rows = append(rows, x)
		}
	}
	results := map[string][]sample{}
	for round := 1; round <= opt.Rounds; round++ {
		for _, x := range rows {
			if x.Once && round < opt.Rounds {
				continue
			}
			profile := opt.CPUProfile != "" && (round == opt.Rounds || x.Once)
			s, err := measure(ctx, x, round, profile, opt.CPUProfile)
			if err != nil {
				progress("round %d %s: %v", round, x.ID, err)
				if s.Ops == 0 && s.Errors == 0 {
					s.Errors = 1
				}
			}
			if x.Stack != nil {
				// How long the consumers (projections, saga, alerts) still
				// needed after the load stopped: their lag.
				t := time.Now()
				if err := x.Stack.drain(ctx); err != nil {
					return err
				}
				if x.Stack.router != nil {
					if s.Extra == nil {
						s.Extra = map[string]float64{}
					}
					s.Extra["drain_ms"] = ms(time.Since(t))
				}
			}
			results[x.ID] = append(results[x.ID], s)
			progress("round %d/%d %-20s %s", round, opt.Rounds, x.ID, brief(s))
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}

	var sums []summary
	for _, x := range rows {
		sums = append(sums, summarise(x, results[x.ID], results[x.Baseline], results[x.p99Base()]))
	}
	rep := report{Started: began, Elapsed: time.Since(began).Round(time.Millisecond).String(), Machine: machine(),
		Options: opt, Rows: sums}
	fmt.Fprintf(stdout, "enrollgate-bench: %d rounds of %s measurements (quick=%v), %s on %s, %s, %s CPUs, %s\n\n",
		opt.Rounds, opt.Duration, opt.Quick, rep.Machine["date"], rep.Machine["cpu"], rep.Machine["go"],
		rep.Machine["nproc"], rep.Elapsed)
	writeTable(stdout, sums)
	for _, s := range sums {
		if s.Warning != "" {
			rep.Warnings = append(rep.Warnings, s.ID+": "+s.Warning)
		}
	}
	if err := writeJSON(opt.Out, rep); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nresults written to %s\n", opt.Out)
	return nil
}

// measure runs one row, under a CPU profile when asked, and adds the
// process's CPU time per operation (server, service and load generator
// together: on a shared 2-core machine, CPU per operation decides the
// throughput of a CPU-bound scenario).
func measure(ctx context.Context, x *row, round int, profile bool, dir string) (sample, error) {
	before := cpuTime()
	s, err := measureRun(ctx, x, round, profile, dir)
	if used := cpuTime() - before; s.Ops > 0 && used > 0 {
		if s.Extra == nil {
			s.Extra = map[string]float64{}
		}
		s.Extra["cpu_us_per_op"] = float64(used/time.Microsecond) / float64(s.Ops)
	}
	return s, err
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func measureRun(ctx context.Context, x *row, round int, profile bool, dir string) (sample, error) {
	if !profile {
		return x.run(ctx, round)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return sample{}, err
	}
	f, err := os.Create(filepath.Join(dir, x.ID+".prof"))
	if err != nil {
		return sample{}, err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return sample{}, err
	}
	s, err := x.run(ctx, round)
	pprof.StopCPUProfile()
	return s, err
}

func brief(s sample) string {
	var b strings.Builder
	if s.Rate > 0 {
		fmt.Fprintf(&b, "%8.0f/s ", s.Rate)
	}
	if len(s.Lat) > 0 {
		fmt.Fprintf(&b, "p50 %.3fms p99 %.3fms ", ms(quantile(s.Lat, 0.5)), ms(quantile(s.Lat, 0.99)))
	}
	for k, v := range s.Extra {
		fmt.Fprintf(&b, "%s=%.4g ", k, v)
	}
	if s.Errors > 0 {
		fmt.Fprintf(&b, "errors=%d", s.Errors)
	}
	return b.String()
}

// selectRows returns the IDs of the rows in the selected groups, of the
// rows shown beside them and of the baselines they are compared with, and
// the groups that need setting up.
func selectRows(rows []*row, spec string) (map[string]bool, map[string]bool, error) {
	known := map[string]bool{}
	for _, x := range rows {
		known[x.Group] = true
	}
	want := map[string]bool{}
	for g := range strings.SplitSeq(spec, ",") {
		g = strings.TrimSpace(g)
		switch {
		case g == "" || g == "all":
			for k := range known {
				want[k] = true
			}
		case known[g]:
			want[g] = true
		default:
			groups := slices.Sorted(func(yield func(string) bool) {
				for k := range known {
					if !yield(k) {
						return
					}
				}
			})
			return nil, nil, fmt.Errorf("unknown scenario group %q (known: %s)", g, strings.Join(groups, ", "))
		}
	}
	ids, groups := map[string]bool{}, map[string]bool{}
	for _, x := range rows {
		if want[x.Group] {
			ids[x.ID] = true
			for _, b := range x.Beside {
				ids[b] = true
			}
		}
	}
	// Baselines are raw rows, which have neither baselines nor rows beside.
	for _, x := range rows {
		if ids[x.ID] {
			if x.Baseline != "" {
				ids[x.Baseline] = true
			}
			if x.P99Base != "" {
				ids[x.P99Base] = true
			}
		}
	}
	for _, x := range rows {
		if ids[x.ID] {
			groups[x.Group] = true
		}
	}
	if ids["raw-replay"] {
		groups["S6"] = true
	}
	return ids, groups, nil
}

// setup starts what the selected groups need: the main stack always (the
// raw baselines run on its server), the sync-always stack for S8, the
// replay server for S6, and the sites.
func (r *runner) setup(ctx context.Context, dir string, groups map[string]bool, log zerolog.Logger) error {
	t := time.Now()
	var err error
	if r.main, err = newStack(ctx, "main", filepath.Join(dir, "main"), false, r.opt.Consumers, log); err != nil {
		return err
	}
	if r.raw, err = newRawClients(ctx, r.main.url, frontends); err != nil {
		return err
	}
	if err := r.addFrontends(r.main); err != nil {
		return err
	}
	r.httpClient = newHTTPClient()
	for range frontends {
		r.hfronts = append(r.hfronts, httpFrontend{client: r.httpClient, base: r.main.httpURL})
	}
	r.sites[r.main] = &siteSet{}
	if groups["S1"] || groups["S2"] {
		if err := r.sites[r.main].generate(ctx, r.main.svc, "site", sites1k, frontends); err != nil {
			return err
		}
	}
	if groups["S4"] || groups["S7"] {
		n := zipfSites
		if groups["S7"] {
			n = r.opt.MemorySites
		}
		r.zsites = &siteSet{}
		if err := r.zsites.generate(ctx, r.main.svc, "zipf", n, frontends); err != nil {
			return err
		}
	}
	r.log("main stack: %d + %d sites generated in %s", len(r.sites[r.main].names), lenSites(r.zsites), time.Since(t).Round(time.Millisecond))
	// The main stack's consumers catch up with those appends while the other
	// environments are set up; drained at the end.
	if groups["S8"] {
		t = time.Now()
		if r.sync, err = newStack(ctx, "sync", filepath.Join(dir, "sync"), true, r.opt.Consumers, log); err != nil {
			return err
		}
		if r.rawSync, err = newRawClients(ctx, r.sync.url, frontends); err != nil {
			return err
		}
		if err := r.addFrontends(r.sync); err != nil {
			return err
		}
		r.sites[r.sync] = &siteSet{}
		if err := r.sites[r.sync].generate(ctx, r.sync.svc, "site", sites1k, frontends); err != nil {
			return err
		}
		if err := r.sync.drain(ctx); err != nil {
			return err
		}
		r.log("sync-always stack: %d sites generated in %s", sites1k, time.Since(t).Round(time.Millisecond))
	}
	if groups["bare"] {
		if r.bare, err = newBareEnv(ctx, r.main.url, r.raw.conns, sites1k, r.gen.run); err != nil {
			return err
		}
	}
	if groups["S9"] {
		if r.flood, err = newFloodSites(ctx, r.main.svc, r.fronts[r.main][0], r.gen); err != nil {
			return err
		}
	}
	if groups["S6"] {
		t = time.Now()
		if r.replay, err = newReplayEnv(ctx, filepath.Join(dir, "replay"), r.opt.RebuildEvents, log); err != nil {
			return err
		}
		r.log("replay stream: %d events appended in %s", r.opt.RebuildEvents, time.Since(t).Round(time.Millisecond))
	}
	return r.main.drain(ctx)
}

func lenSites(ss *siteSet) int {
	if ss == nil {
		return 0
	}
	return len(ss.names)
}

// addFrontends connects the frontends of st: one NATS connection each.
func (r *runner) addFrontends(st *stack) error {
	for i := range frontends {
		nc, err := nats.Connect(st.url, nats.Name(fmt.Sprintf("frontend-%d", i)))
		if err != nil {
			return fmt.Errorf("frontend: %w", err)
		}
		st.conns = append(st.conns, nc)
		r.fronts[st] = append(r.fronts[st], natsFrontend{nc: nc})
	}
	return nil
}

func (r *runner) close() {
	if r.httpClient != nil {
		r.httpClient.CloseIdleConnections()
	}
	if r.bare != nil {
		r.bare.close()
	}
	for _, rc := range []*rawClients{r.raw, r.rawSync} {
		if rc != nil {
			rc.close()
		}
	}
	for _, st := range []*stack{r.main, r.sync} {
		if st != nil {
			st.close()
		}
	}
	if r.replay != nil {
		r.replay.close()
	}
}

// machine describes where the run happened.
func machine() map[string]string {
	m := map[string]string{"go": runtime.Version(), "nproc": fmt.Sprint(runtime.NumCPU()),
		"gomaxprocs": fmt.Sprint(runtime.GOMAXPROCS(0)), "os": runtime.GOOS + "/" + runtime.GOARCH,
		"date": time.Now().Format(time.RFC3339), "cpu": "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
