package lockouttest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/internal/alerts"
)

// BenchmarkLockoutAlertLatency measures the time from the verdict of the
// failure that reaches the threshold to the lockout alert arriving on a core
// NATS subscription of enrollgate.alerts.>: the saga's consumer, the disable
// command, the alert publisher's consumer and the alert publish. Each
// iteration locks a fresh site; only that window is timed. It reports the
// median and the 99th percentile in milliseconds (goal: p99 <= 50 ms).
func BenchmarkLockoutAlertLatency(b *testing.B) {
	pol := testPolicy()
	h := newHarness(b, 1, pol)
	h.startLockout()
	svc := h.svcs[0]
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		site := fmt.Sprintf("bench-%d", i)
		h.generate(site)
		for j := range pol.MaxFailedAttempts - 1 {
			h.verify(svc, site, wrong(j), source(j))
		}
		res := h.verify(svc, site, wrong(pol.MaxFailedAttempts), source(pol.MaxFailedAttempts))
		if res.Reason != domain.ReasonWrongPasscode {
			b.Fatalf("threshold attempt got %+v", res.Verdict)
		}
		start := time.Now()
		b.StartTimer()
		want := alerts.Subject(site, alerts.KindPasscodeLockout)
		for {
			m, err := h.alerts.NextMsg(5 * time.Second)
			if err != nil {
				b.Fatalf("no alert for %s: %v", site, err)
			}
			if m.Subject == want {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[(len(lat)*99+99)/100-1]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
}
