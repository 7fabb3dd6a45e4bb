package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func testRows() []*row {
	r := &runner{opt: options{Duration: time.Millisecond, RebuildEvents: 1, MemorySites: zipfSites}}
	return r.rows()
}

func sortedKeys(m map[string]bool) []string {
	var keys []string
	for k, v := range m {
		if v {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// TestSelectRows: a group brings its baselines and the bare shape shown
// beside it, and nothing else.
func TestSelectRows(t *testing.T) {
	rows := testRows()
	for _, c := range []struct {
		spec       string
		ids        []string
		groups     []string
		notGroups  []string
		notPresent []string
	}{
		{spec: "S1",
			ids: []string{"S1-http", "S1-nats", "bare-acked3-c1-s1k", "bare-c1-s1k", "bare-ordered-c1-s1k",
				"raw-sync-c1-s1k"},
			groups: []string{"S1", "bare", "raw"}, notGroups: []string{"S2", "S9"}},
		{spec: "S2",
			ids: []string{"S2-http", "S2-nats", "bare-acked3-c16-s1k", "bare-c16-s1k", "bare-ordered-c16-s1k",
				"raw-sync-c16-s1k"},
			groups: []string{"S2", "bare", "raw"}},
		{spec: "bare",
			ids: []string{"bare-acked3-c1-s1k", "bare-acked3-c16-s1k", "bare-c1-s1k", "bare-c16-s1k",
				"bare-ordered-c1-s1k", "bare-ordered-c16-s1k", "raw-sync-c1-s1k", "raw-sync-c16-s1k"},
			groups: []string{"bare", "raw"}, notGroups: []string{"S1", "S2"}},
		{spec: "S3", ids: []string{"S3-nats", "raw-sync-c1-s1", "raw-sync-c4-s1"}, groups: []string{"S3", "raw"}},
		{spec: "S9", ids: []string{"S9-locked", "S9-throttled", "raw-reqrep-c16"}, groups: []string{"S9", "raw"},
			notGroups: []string{"bare"}},
		{spec: "S6", ids: []string{"S6-rebuild", "raw-replay"}, groups: []string{"S6", "raw"}},
		{spec: " S9 , S3", ids: []string{"S3-nats", "S9-locked", "S9-throttled", "raw-reqrep-c16", "raw-sync-c1-s1",
			"raw-sync-c4-s1"}},
	} {
		ids, groups, err := selectRows(rows, c.spec)
		if err != nil {
			t.Fatalf("%q: %v", c.spec, err)
		}
		if got := sortedKeys(ids); !slices.Equal(got, c.ids) {
			t.Errorf("%q selects\n %v, want\n %v", c.spec, got, c.ids)
		}
		for _, g := range c.groups {
			if !groups[g] {
				t.Errorf("%q: group %s not set up", c.spec, g)
			}
		}
		for _, g := range c.notGroups {
			if groups[g] {
				t.Errorf("%q: group %s set up, not needed", c.spec, g)
			}
		}
	}
	all, _, err := selectRows(rows, "all")
	if err != nil || len(all) != len(rows) {
		t.Fatalf("all selects %d of %d rows (%v)", len(all), len(rows), err)
	}
	if _, _, err := selectRows(rows, "S1,S10"); err == nil || !strings.Contains(err.Error(), `"S10"`) ||
		!strings.Contains(err.Error(), "bare") {
		t.Fatalf("unknown group: %v, want an error naming it and the known ones", err)
	}
}

// TestRowsReferToRows: every baseline and row beside names a row that runs
// before it in a round, so that the ratio is taken in the same round, and a
// target that needs a baseline has one.
func TestRowsReferToRows(t *testing.T) {
	seen := map[string]bool{}
	for _, x := range testRows() {
		if seen[x.ID] {
			t.Errorf("row %s twice", x.ID)
		}
		for _, ref := range append([]string{x.Baseline, x.P99Base}, x.Beside...) {
			if ref != "" && !seen[ref] {
				t.Errorf("%s refers to %s, which does not run before it", x.ID, ref)
			}
		}
		if (x.Target.MinRatio > 0 || x.Target.MaxP99Ratio > 0) && x.Baseline == "" {
			t.Errorf("%s has a ratio target and no baseline", x.ID)
		}
		seen[x.ID] = true
	}
}

// TestTargets: the targets of issue 12.
func TestTargets(t *testing.T) {
	want := map[string]string{
		"S1-nats":      "≥ 0.30× raw, p99 ≤ 3× raw",
		"S1-http":      "≥ 0.30× raw, p99 ≤ 3× raw",
		"S2-nats":      "≥ 0.33× raw, p99 ≤ 3× raw",
		"S2-http":      "≥ 0.33× raw, p99 ≤ 3× raw",
		"S3-nats":      "≥ 0.50× raw, p99 ≤ 3× raw, conflicts_per_success ≤ 0.01",
		"S4-nats":      "p99 ≤ 3× raw",
		"S5-lockout":   "p99 ≤ 50ms",
		"S6-rebuild":   "≥ 0.65× raw",
		"S7-memory":    "bytes_per_site ≤ 1024 at 1000000",
		"S8-S1-nats":   "≥ 0.90× raw",
		"S8-S2-nats":   "≥ 0.90× raw",
		"S9-locked":    "≥ 0.50× raw, appends_per_op ≤ 0",
		"S9-throttled": "≥ 0.50× raw, appends_per_op ≤ 0",
	}
	base := map[string]string{"S1-nats": "raw-sync-c1-s1k", "S2-nats": "raw-sync-c16-s1k", "S3-nats": "raw-sync-c1-s1",
		"S6-rebuild": "raw-replay", "S9-locked": "raw-reqrep-c16", "S9-throttled": "raw-reqrep-c16"}
	p99base := map[string]string{"S1-nats": "raw-sync-c1-s1k", "S2-nats": "raw-sync-c16-s1k", "S3-nats": "raw-sync-c4-s1",
		"S4-nats": "raw-sync-c16-s1k"}
	for _, x := range testRows() {
		if got := x.Target.String(); got != want[x.ID] {
			t.Errorf("%s target %q, want %q", x.ID, got, want[x.ID])
		}
		if b, ok := base[x.ID]; ok && x.Baseline != b {
			t.Errorf("%s against %s, want %s", x.ID, x.Baseline, b)
		}
		if b, ok := p99base[x.ID]; ok && x.p99Base() != b {
			t.Errorf("%s p99 against %s, want %s (same concurrency)", x.ID, x.p99Base(), b)
		}
	}
}

// TestJudge: each part of a target can miss; a run smaller than the
// target's size is not judged; the JSON carries met only when judged.
func TestJudge(t *testing.T) {
	pass := summary{Rounds: 2, Ops: 2_000_000, Ratio: 0.6, P99Ratio: 2, PooledP: map[string]float64{"p99": 10},
		Extra: map[string]float64{"bytes_per_site": 900, "appends_per_op": 0}}
	for _, c := range []struct {
		name   string
		t      target
		change func(*summary)
		status string
		met    *bool
	}{
		{"no target", target{}, nil, "-", nil},
		{"ratio met", target{MinRatio: 0.5}, nil, "pass", ptr(true)},
		{"ratio missed", target{MinRatio: 0.5}, func(s *summary) { s.Ratio = 0.49 }, "**miss** (rate)", ptr(false)},
		{"no ratio", target{MinRatio: 0.5}, func(s *summary) { s.Ratio = 0 }, "**miss** (rate)", ptr(false)},
		{"p99 ratio", target{MaxP99Ratio: 3}, func(s *summary) { s.P99Ratio = 3.1 }, "**miss** (p99)", ptr(false)},
		{"p99 absolute", target{MaxP99: 5 * time.Millisecond}, nil, "**miss** (p99)", ptr(false)},
		{"extra zero met", target{ExtraName: "appends_per_op"}, nil, "pass", ptr(true)},
		{"extra zero missed", target{ExtraName: "appends_per_op"}, func(s *summary) { s.Extra["appends_per_op"] = 0.001 },
			"**miss** (appends_per_op)", ptr(false)},
		{"extra absent", target{ExtraName: "conflicts_per_success", ExtraMax: 1}, nil, "**miss** (conflicts_per_success)", ptr(false)},
		{"errors", target{MinRatio: 0.5}, func(s *summary) { s.Errors = 1 }, "**miss** (errors)", ptr(false)},
		{"at size", target{ExtraName: "bytes_per_site", ExtraMax: 1024, AtOps: 1_000_000}, nil, "pass", ptr(true)},
		{"below size", target{ExtraName: "bytes_per_site", ExtraMax: 1024, AtOps: 1_000_000},
			func(s *summary) { s.Rounds, s.Ops = 1, 10_000 }, "not judged (10000 of 1000000)", nil},
	} {
		s := pass
		s.Extra = map[string]float64{}
		for k, v := range pass.Extra {
			s.Extra[k] = v
		}
		if c.change != nil {
			c.change(&s)
		}
		status, met := judge(c.t, s)
		if status != c.status || (met == nil) != (c.met == nil) || (met != nil && *met != *c.met) {
			t.Errorf("%s: %q met=%v, want %q met=%v", c.name, status, deref(met), c.status, deref(c.met))
		}
		s.Status, s.Met = status, met
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if hasMet := strings.Contains(string(b), `"met":`); hasMet != (c.met != nil) {
			t.Errorf("%s: JSON %s, want met only when judged", c.name, b)
		}
	}
}

func ptr(b bool) *bool { return &b }

func deref(b *bool) string {
	if b == nil {
		return "nil"
	}
	if *b {
		return "true"
	}
	return "false"
}
