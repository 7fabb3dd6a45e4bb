package main

import (
	"strings"
	"testing"
	"time"
)

func TestQuantileNearestRank(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 1000; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {0.999, 999 * time.Millisecond}, {1, time.Second}} {
		if got := quantile(lat, c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if quantile(nil, 0.99) != 0 {
		t.Error("quantile of nothing must be 0")
	}
}

func TestSummariseRatiosAndJudge(t *testing.T) {
	r := &row{ID: "S", Baseline: "raw", Target: target{MinRatio: 0.8, MaxP99Ratio: 2}}
	lat := func(d time.Duration) []time.Duration { return []time.Duration{d, d} }
	base := []sample{{Rate: 100, Lat: lat(time.Millisecond)}, {Rate: 200, Lat: lat(time.Millisecond)}, {Rate: 100, Lat: lat(time.Millisecond)}}
	got := []sample{{Rate: 90, Lat: lat(time.Millisecond)}, {Rate: 180, Lat: lat(3 * time.Millisecond)}, {Rate: 90, Lat: lat(time.Millisecond)}}
	s := summarise(r, got, base, base)
	if s.Ratio < 0.899 || s.Ratio > 0.901 || s.Spread != 0 || s.Warning != "" {
		t.Fatalf("ratio %v spread %v warning %q, want 0.9, 0, none", s.Ratio, s.Spread, s.Warning)
	}
	if s.P99Ratio != 1 || s.Status != "pass" {
		t.Fatalf("p99 ratio %v status %q, want 1 and pass", s.P99Ratio, s.Status)
	}
	got[1].Rate = 60 // ratio 0.3 in one round: spread, and the median still 0.9
	s = summarise(r, got, base, base)
	if !strings.Contains(s.Warning, "spread") || s.Status != "pass" {
		t.Fatalf("warning %q status %q, want a spread warning and pass", s.Warning, s.Status)
	}
	got[0].Rate, got[2].Rate = 50, 50
	if s = summarise(r, got, base, base); !strings.Contains(s.Status, "miss** (rate)") {
		t.Fatalf("status %q, want a rate miss", s.Status)
	}
}
