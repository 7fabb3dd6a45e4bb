// Command enrollgate-faults is the fault suite (make faults): it builds
// nats-server and enrollgate, starts a real 3-node cluster and three
// replicas as processes on loopback, runs every scenario of
// internal/faults under bounded load, prints the table and ends with
// `faults: N passed, M failed` (exit status 1 when any failed). See
// docs/faults.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/enrollgate/enrollgate/internal/faults"
)

func main() {
	os.Exit(run())
}

func run() int {
	scenarios := flag.String("scenarios", "", "comma-separated scenarios to run (default all): "+strings.Join(faults.ScenarioNames(), ", "))
	rate := flag.Int("rate", 100, "background verdicts per second over all replicas")
	stormSites := flag.Int("storm-sites", 3, "sites of the lockout storm")
	stormAttempts := flag.Int("storm-attempts", 300, "wrong attempts per storm site")
	dir := flag.String("dir", "", "work dir for binaries, data and logs (default: a new temporary dir)")
	keep := flag.Bool("keep", false, "keep the work dir (always kept when a scenario failed)")
	quiet := flag.Bool("q", false, "no progress lines on stderr")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work := *dir
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "enrollgate-faults-"); err != nil {
			fmt.Fprintln(os.Stderr, "enrollgate-faults:", err)
			return 2
		}
	} else if err := os.MkdirAll(work, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, "enrollgate-faults:", err)
		return 2
	}
	cfg := faults.Config{Dir: work, Rate: *rate, StormSites: *stormSites, StormAttempts: *stormAttempts, Progress: os.Stderr}
	if *quiet {
		cfg.Progress = nil
	}
	var names []string
	if *scenarios != "" {
		names = strings.Split(*scenarios, ",")
	}
	started := time.Now()
	fmt.Fprintf(os.Stderr, "enrollgate-faults: building nats-server and enrollgate into %s\n", work)
	natsBin, egBin, err := faults.Build(work)
	if err != nil {
		fmt.Fprintln(os.Stderr, "enrollgate-faults:", err)
		return 2
	}
	s := faults.New(cfg, natsBin, egBin)
	results, err := s.Run(ctx, names)
	s.Close()
	fmt.Printf("enrollgate fault suite, %s, %d CPUs, %s\n\n", time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), memory())
	failed := faults.WriteTable(os.Stdout, results)
	if err != nil {
		fmt.Fprintln(os.Stderr, "enrollgate-faults:", err)
		failed++
	}
	fmt.Fprintf(os.Stderr, "enrollgate-faults: %s in all; logs in %s\n", time.Since(started).Round(time.Second), work)
	if failed > 0 {
		return 1
	}
	if !*keep && *dir == "" {
		os.RemoveAll(work)
	}
	return 0
}

// memory is the machine's memory as /proc/meminfo says, for the report.
func memory() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "memory unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			var kb int64
			fmt.Sscan(f[1], &kb)
			return fmt.Sprintf("%.1f GiB memory", float64(kb)/(1<<20))
		}
	}
	return "memory unknown"
}
