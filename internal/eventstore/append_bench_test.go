package eventstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// benchSites is how many sites the parallel benchmarks spread their load
// over, as S1/S2 of cmd/enrollgate-bench do.
const benchSites = 1000

// BenchmarkAppend: N clients append to 1,000 sites through one Store (one
// connection), each client owning its own sites and appending with the right
// expectation, as the handlers do.
func BenchmarkAppend(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("c%d", clients), func(b *testing.B) { benchAppend(b, clients) })
	}
}

func benchAppend(b *testing.B, clients int) {
	srv := natstest.StartServer(b)
	st, _ := newStore(b, srv, eventstore.DefaultConfig())
	ctx := context.Background()
	data := events.EnrollmentAttemptSucceeded{PasscodeID: "gen-bench", AttemptID: "bench", AttemptDigest: []byte{1, 2, 3},
		Source: events.Source{IP: "198.51.100.7", DeviceID: "bench-device", Platform: "ios"}}
	actor := events.Actor{Kind: events.ActorDevice, ID: "bench-device"}
	b.ReportAllocs()
	var done atomic.Int64
	var wg sync.WaitGroup
	cpu := startCPU(b)
	for c := range clients {
		wg.Go(func() {
			ids := handlers.NewULIDs()
			var sites []events.Site
			for i := c; i < benchSites; i += clients {
				sites = append(sites, events.Site(fmt.Sprintf("append-%04d", i)))
			}
			last := make([]uint64, len(sites))
			for k := 0; done.Add(1) <= int64(b.N); k++ {
				j := k % len(sites)
				e := events.Event{ID: ids.NewID(), Site: sites[j], OccurredAt: time.Now(), Actor: actor, Data: data}
				seq, err := st.Append(ctx, e, last[j])
				if err != nil {
					b.Errorf("append to %s after %d: %v", sites[j], last[j], err)
					return
				}
				last[j] = seq
			}
		})
	}
	wg.Wait()
	cpu.report(b)
}

// BenchmarkVerifyParallel: N clients verify the right passcode on 1,000
// sites through handlers.Service.VerifyPasscode on the real store; every
// verify appends one EnrollmentAttemptSucceeded.
func BenchmarkVerifyParallel(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("c%d", clients), func(b *testing.B) { benchVerifyParallel(b, clients) })
	}
}

func benchVerifyParallel(b *testing.B, clients int) {
	srv := natstest.StartServer(b)
	st, _ := newStore(b, srv, eventstore.DefaultConfig())
	svc := newService(b, st, handlers.DefaultConfig())
	sites := make([]events.Site, benchSites)
	passcodes := make([]handlers.Secret, benchSites)
	var wg sync.WaitGroup
	for c := range 16 { // set-up, spread over goroutines to keep it short
		wg.Go(func() {
			for i := c; i < benchSites; i += 16 {
				sites[i] = events.Site(fmt.Sprintf("verify-%04d", i))
				passcodes[i] = generate(b, svc, sites[i]).Passcode
			}
		})
	}
	wg.Wait()
	b.ReportAllocs()
	var done atomic.Int64
	cpu := startCPU(b)
	for c := range clients {
		wg.Go(func() {
			src := events.Source{IP: fmt.Sprintf("198.51.100.%d", c+1), DeviceID: fmt.Sprintf("bench-%d", c)}
			for k := 0; ; k++ {
				n := done.Add(1)
				if n > int64(b.N) {
					return
				}
				// Client c owns the sites c, c+clients, ...
				i := (c + k*clients) % benchSites
				res, err := svc.VerifyPasscode(context.Background(), handlers.VerifyPasscode{Site: sites[i], Passcode: passcodes[i],
					AttemptID: fmt.Sprintf("b%d", n), Source: src})
				if err != nil || !res.OK {
					b.Errorf("verify %s: %+v %v", sites[i], res, err)
					return
				}
			}
		})
	}
	wg.Wait()
	cpu.report(b)
}

// cpuClock measures the process's CPU time (server, store and load
// generator together: the server is in-process) over a benchmark, and the
// rate, both per operation: on a shared machine CPU per operation is steadier
// than ns/op.
type cpuClock struct {
	cpu   time.Duration
	start time.Time
}

func startCPU(b *testing.B) cpuClock {
	b.ResetTimer()
	return cpuClock{cpu: processCPU(b), start: time.Now()}
}

func (c cpuClock) report(b *testing.B) {
	b.StopTimer()
	used := processCPU(b) - c.cpu
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(b.N)/time.Since(c.start).Seconds(), "ops/s")
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
