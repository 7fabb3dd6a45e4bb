package projector

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/readstore"
)

// BenchmarkLive measures the live path: N workload events (ENROLLGATE_BENCH_EVENTS,
// default 20,000 here) stored before the router starts, then the time until
// the projector's durable has applied all of them to a fresh read store.
// Each iteration runs every mode on a fresh durable and store, so that the
// modes compare in the same run: maxackpending=1 has one event in flight,
// 256 prefetches; per-event commits every event as it is staged (one
// transaction each), batched stages and commits as Register does
// (consume.WithCommit: up to CommitMax events per transaction).
func BenchmarkLive(b *testing.B) {
	n := 20_000
	if testing.Short() {
		n = 2_000
	}
	e := newEnv(b)
	e.publishBulk(b, newWorkload(7, 1000), n)
	last := uint64(n)
	type mode struct {
		pending int
		batched bool
	}
	for _, m := range []mode{{1, false}, {consume.DefaultConfig().MaxAckPending, false}, {consume.DefaultConfig().MaxAckPending, true}} {
		pending := m.pending
		name := fmt.Sprintf("maxackpending=%d/per-event", pending)
		if m.batched {
			name = fmt.Sprintf("maxackpending=%d/batched", pending)
		}
		b.Run(name, func(b *testing.B) {
			for i := range b.N {
				cfg := consume.DefaultConfig()
				cfg.MaxAckPending = pending
				st, err := readstore.Open(storeConfig(filepath.Join(b.TempDir(), fmt.Sprintf("live-%d.db", i))))
				if err != nil {
					b.Fatal(err)
				}
				p := New(st)
				// A fresh durable each time: the projector's constant would
				// start where the previous iteration stopped.
				r, err := consume.NewRouter(cfg, func() (*nats.Conn, error) { return nats.Connect(e.url) }, e.auth, zerolog.Nop())
				if err != nil {
					b.Fatal(err)
				}
				durable := fmt.Sprintf("bench-%d-%d", pending, time.Now().UnixNano())
				if m.batched {
					err = p.Register(r, durable)
				} else {
					err = r.AddHandler(durable, func(ctx context.Context, rec events.Record) error {
						if err := p.Stage(ctx, rec); err != nil {
							return err
						}
						return p.Commit(ctx)
					})
				}
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				done := make(chan error, 1)
				go func() { done <- r.Run(context.Background()) }()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				err = p.WaitFor(ctx, last)
				cancel()
				d := time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Close(); err != nil {
					b.Fatal(err)
				}
				<-done
				_ = st.Close()
				b.ReportMetric(float64(n)/d.Seconds(), "events/s")
			}
		})
	}
}
