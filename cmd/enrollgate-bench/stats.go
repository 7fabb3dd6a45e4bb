package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// spreadWarn is the spread of per-round ratios ((max-min)/median) above which
// a row is flagged: its ratio is not stable enough to judge a target by.
const spreadWarn = 0.15

// sample is one row's measurement in one round.
type sample struct {
	Ops    int             // operations completed (0 for a pure latency or memory row)
	Rate   float64         // operations per second; 0 when not a rate
	Lat    []time.Duration // per-operation latencies, sorted by finish()
	Errors int             // operations that failed or got an unexpected verdict
	// Extra holds row-specific figures: conflicts_per_success,
	// bytes_per_site, loads_per_op...
	Extra map[string]float64
}

// finish sorts the latencies and computes the rate over elapsed.
func (s *sample) finish(elapsed time.Duration) {
	slices.Sort(s.Lat)
	if elapsed > 0 && s.Ops > 0 {
		s.Rate = float64(s.Ops) / elapsed.Seconds()
	}
}

// quantile returns the q-quantile (nearest rank) of sorted latencies, 0 when
// there are none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// target is what a row must reach. Zero fields are not checked.
type target struct {
	MinRatio    float64       // rate ratio to the baseline, median of rounds
	MaxP99Ratio float64       // p99 ratio to the baseline's p99, median of rounds
	MaxP99      time.Duration // absolute p99 (pooled samples)
	ExtraName   string        // an Extra figure with an upper bound
	ExtraMax    float64
	// AtOps is the size (operations per round) the target is set at: a
	// smaller run (S7 in -quick) says how far it got but is not judged.
	AtOps int
}

func (t target) String() string {
	var parts []string
	if t.MinRatio > 0 {
		parts = append(parts, fmt.Sprintf("≥ %.2f× raw", t.MinRatio))
	}
	if t.MaxP99Ratio > 0 {
		parts = append(parts, fmt.Sprintf("p99 ≤ %.0f× raw", t.MaxP99Ratio))
	}
	if t.MaxP99 > 0 {
		parts = append(parts, fmt.Sprintf("p99 ≤ %s", t.MaxP99))
	}
	if t.ExtraName != "" {
		parts = append(parts, fmt.Sprintf("%s ≤ %g", t.ExtraName, t.ExtraMax))
	}
	s := strings.Join(parts, ", ")
	if t.AtOps > 0 {
		s += fmt.Sprintf(" at %d", t.AtOps)
	}
	return s
}

// summary is a row's result over all rounds: what the table and the JSON
// show.
type summary struct {
	ID       string             `json:"id"`
	Title    string             `json:"title"`
	Baseline string             `json:"baseline,omitempty"`
	Rounds   int                `json:"rounds"`
	Ops      int                `json:"ops"`
	Errors   int                `json:"errors"`
	Rate     float64            `json:"rate_per_s"`             // median of rounds
	P50      float64            `json:"p50_ms"`                 // median of rounds
	P99      float64            `json:"p99_ms"`                 // median of rounds
	P999     float64            `json:"p999_ms"`                // median of rounds
	PooledP  map[string]float64 `json:"pooled_ms,omitempty"`    // p50/p99/max over all rounds' samples
	Ratio    float64            `json:"ratio,omitempty"`        // median of per-round rate ratios
	Ratios   []float64          `json:"ratios,omitempty"`       // per round
	Spread   float64            `json:"ratio_spread,omitempty"` // (max-min)/median of Ratios
	P99Ratio float64            `json:"p99_ratio,omitempty"`    // median of per-round p99 ratios
	Extra    map[string]float64 `json:"extra,omitempty"`        // medians of rounds
	Target   string             `json:"target,omitempty"`
	Status   string             `json:"status"`        // pass, miss (why), not judged (why), or "-" when no target
	Met      *bool              `json:"met,omitempty"` // the status as a boolean; absent when not judged
	Warning  string             `json:"warning,omitempty"`
	Rows     []roundJSON        `json:"per_round"`
}

type roundJSON struct {
	Rate   float64            `json:"rate_per_s,omitempty"`
	P50    float64            `json:"p50_ms,omitempty"`
	P99    float64            `json:"p99_ms,omitempty"`
	P999   float64            `json:"p999_ms,omitempty"`
	Ops    int                `json:"ops"`
	Errors int                `json:"errors,omitempty"`
	Extra  map[string]float64 `json:"extra,omitempty"`
}

// summarise folds a row's rounds, with its baselines' rounds (same index =
// same round) for the rate ratio (base) and the p99 ratio (p99base).
func summarise(r *row, got, base, p99base []sample) summary {
	s := summary{ID: r.ID, Title: r.Title, Baseline: r.Baseline, Rounds: len(got), Target: r.Target.String(),
		Extra: map[string]float64{}}
	var rates, p50, p99, p999, ratios, p99r []float64
	var pooled []time.Duration
	extras := map[string][]float64{}
	for i, g := range got {
		s.Ops += g.Ops
		s.Errors += g.Errors
		rates = append(rates, g.Rate)
		p50 = append(p50, ms(quantile(g.Lat, 0.50)))
		p99 = append(p99, ms(quantile(g.Lat, 0.99)))
		p999 = append(p999, ms(quantile(g.Lat, 0.999)))
		pooled = append(pooled, g.Lat...)
		for k, v := range g.Extra {
			extras[k] = append(extras[k], v)
		}
		s.Rows = append(s.Rows, roundJSON{Rate: g.Rate, P50: p50[i], P99: p99[i], P999: p999[i], Ops: g.Ops,
			Errors: g.Errors, Extra: g.Extra})
		if i < len(base) && base[i].Rate > 0 && g.Rate > 0 {
			ratios = append(ratios, g.Rate/base[i].Rate)
		}
		if i < len(p99base) && len(p99base[i].Lat) > 0 && len(g.Lat) > 0 {
			p99r = append(p99r, float64(quantile(g.Lat, 0.99))/float64(quantile(p99base[i].Lat, 0.99)))
		}
	}
	s.Rate, s.P50, s.P99, s.P999 = median(rates), median(p50), median(p99), median(p999)
	for k, v := range extras {
		s.Extra[k] = median(v)
	}
	if len(pooled) > 0 {
		slices.Sort(pooled)
		s.PooledP = map[string]float64{"p50": ms(quantile(pooled, 0.5)), "p99": ms(quantile(pooled, 0.99)),
			"max": ms(pooled[len(pooled)-1])}
	}
	if len(ratios) > 0 {
		s.Ratios, s.Ratio = ratios, median(ratios)
		if len(ratios) > 1 && s.Ratio > 0 {
			s.Spread = (slices.Max(ratios) - slices.Min(ratios)) / s.Ratio
			if s.Spread > spreadWarn {
				s.Warning = fmt.Sprintf("per-round ratios spread %.0f%% (> %.0f%%): noisy", 100*s.Spread, 100*spreadWarn)
			}
		}
	}
	if len(p99r) > 0 {
		s.P99Ratio = median(p99r)
	}
	s.Status, s.Met = judge(r.Target, s)
	if s.Errors > 0 {
		s.Warning = strings.TrimPrefix(s.Warning+fmt.Sprintf("; %d errors", s.Errors), "; ")
	}
	return s
}

// judge checks a summary against its target: the status the table shows,
// and whether the target is met (nil when there is none or the run was too
// small to tell).
func judge(t target, s summary) (string, *bool) {
	if t == (target{}) {
		return "-", nil
	}
	if perRound := s.Ops / max(s.Rounds, 1); perRound < t.AtOps {
		return fmt.Sprintf("not judged (%d of %d)", perRound, t.AtOps), nil
	}
	var miss []string
	if t.MinRatio > 0 && (s.Ratio == 0 || s.Ratio < t.MinRatio) {
		miss = append(miss, "rate")
	}
	if t.MaxP99Ratio > 0 && (s.P99Ratio == 0 || s.P99Ratio > t.MaxP99Ratio) {
		miss = append(miss, "p99")
	}
	if t.MaxP99 > 0 && (s.PooledP == nil || s.PooledP["p99"] > ms(t.MaxP99)) {
		miss = append(miss, "p99")
	}
	if t.ExtraName != "" {
		if v, ok := s.Extra[t.ExtraName]; !ok || v > t.ExtraMax {
			miss = append(miss, t.ExtraName)
		}
	}
	if s.Errors > 0 {
		miss = append(miss, "errors")
	}
	met := len(miss) == 0
	if !met {
		return "**miss** (" + strings.Join(miss, ", ") + ")", &met
	}
	return "pass", &met
}

// writeTable prints the summaries as a markdown table.
func writeTable(w io.Writer, sums []summary) {
	fmt.Fprintln(w, "| row | what | rate/s | p50 ms | p99 ms | p99.9 ms | ratio | p99 ratio | extra | target | status |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |")
	for _, s := range sums {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s.ID, s.Title,
			num(s.Rate, "%.0f"), num(s.P50, "%.3f"), num(s.P99, "%.3f"), num(s.P999, "%.3f"),
			ratioCell(s.Ratio, s.Baseline), num(s.P99Ratio, "%.2f×"), extraCell(s.Extra), dash(s.Target), s.Status)
	}
	var warns []string
	for _, s := range sums {
		if s.Warning != "" {
			warns = append(warns, fmt.Sprintf("- %s: %s", s.ID, s.Warning))
		}
	}
	if len(warns) > 0 {
		fmt.Fprintln(w, "\nWarnings:")
		fmt.Fprintln(w, strings.Join(warns, "\n"))
	}
}

func num(v float64, f string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(f, v)
}

func ratioCell(r float64, base string) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f× %s", r, base)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func extraCell(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%.4g", k, m[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// report is the JSON file.
type report struct {
	Started  time.Time         `json:"started"`
	Elapsed  string            `json:"elapsed"`
	Machine  map[string]string `json:"machine"`
	Options  options           `json:"options"`
	Rows     []summary         `json:"rows"`
	Warnings []string          `json:"warnings,omitempty"`
}

func writeJSON(path string, r report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}
