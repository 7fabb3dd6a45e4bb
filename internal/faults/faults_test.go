package faults

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestFaultsShort is the short version of the fault suite that make test
// runs: a lockout storm and a SIGKILL of the event stream's leader, on a
// real 3-node cluster with three replicas as processes, under a light load.
func TestFaultsShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server and enrollgate and runs a cluster of processes")
	}
	dir := t.TempDir()
	natsBin, egBin, err := Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Dir: dir, Rate: 40, StormSites: 2, StormAttempts: 100, Tail: 2 * time.Second, Progress: testWriter{t}}, natsBin, egBin)
	t.Cleanup(s.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	results, err := s.Run(ctx, []string{"lockout-storm", "stream-leader"})
	var table strings.Builder
	failed := WriteTable(&table, results)
	t.Logf("\n%s", table.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || failed != 0 {
		t.Fatalf("%d scenarios, %d failed", len(results), failed)
	}
	storm, leader := results[0], results[1]
	if storm.Lockouts != 2 || storm.LockoutsOK != 2 {
		t.Errorf("storm: %d of %d lockouts with one disable and one alert, want 2 of 2", storm.LockoutsOK, storm.Lockouts)
	}
	if leader.Acknowledged == 0 || leader.Unavailability == 0 {
		t.Errorf("stream leader: %d acknowledged, unavailability %s: the load did not run", leader.Acknowledged, leader.Unavailability)
	}
	if !s.cluster.Nodes[0].Running() || !s.cluster.Nodes[1].Running() || !s.cluster.Nodes[2].Running() {
		t.Error("a node was left down")
	}
}

// TestUnavailability: the longest time without a verdict counts the edges
// of the load's window too.
func TestUnavailability(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms ...int) []ackedVerdict {
		var v []ackedVerdict
		for _, m := range ms {
			v = append(v, ackedVerdict{at: t0.Add(time.Duration(m) * time.Millisecond)})
		}
		return v
	}
	for _, tt := range []struct {
		name   string
		acked  []ackedVerdict
		end    int
		want   time.Duration
		wantAt int
	}{
		{"steady", at(10, 20, 30, 40), 50, 10 * time.Millisecond, 0},
		{"a gap in the middle, out of order", at(40, 10, 2000, 2010), 2020, 1960 * time.Millisecond, 40},
		{"nothing after a fault", at(10, 20), 5000, 4980 * time.Millisecond, 20},
		{"no verdict at all", nil, 3000, 3 * time.Second, 0},
		{"verdicts outside the window do not count", at(-500, 10, 9000), 100, 90 * time.Millisecond, 10},
	} {
		gap, from := unavailability(tt.acked, t0, t0.Add(time.Duration(tt.end)*time.Millisecond))
		if gap != tt.want || !from.Equal(t0.Add(time.Duration(tt.wantAt)*time.Millisecond)) {
			t.Errorf("%s: %s from %s, want %s from +%d ms", tt.name, gap, from.Sub(t0), tt.want, tt.wantAt)
		}
	}
}

// TestWriteTable: a failed row is marked, its reasons are listed, and the
// summary line counts.
func TestWriteTable(t *testing.T) {
	var b strings.Builder
	n := WriteTable(&b, []Result{
		{Scenario: "a", Passed: true, Acknowledged: 5, Lockouts: 1, LockoutsOK: 1},
		{Scenario: "b", Notes: []string{"eg2 exited"}},
	})
	out := b.String()
	if n != 1 || !strings.Contains(out, "| b        | FAIL ") ||
		!strings.Contains(out, "b failed:\n  - eg2 exited") || !strings.HasSuffix(out, "faults: 1 passed, 1 failed\n") ||
		!strings.Contains(out, "1/1") {
		t.Fatalf("%d failed, table:\n%s", n, out)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
