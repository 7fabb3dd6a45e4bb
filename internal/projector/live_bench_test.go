package projector

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/readstore"
)

// BenchmarkLive measures the live path: N workload events (default 20,000
// here) stored before the router starts, then the time until the live
// projection has applied all of them to a fresh read store.
func BenchmarkLive(b *testing.B) {
	n := 20_000
	if testing.Short() {
		n = 2_000
	}
	e := newEnv(b)
	e.publishBulk(b, newWorkload(7, 1000), n)
	last := uint64(n)
	for i := range b.N {
		st, err := readstore.Open(storeConfig(filepath.Join(b.TempDir(), fmt.Sprintf("live-%d.db", i))))
		if err != nil {
			b.Fatal(err)
		}
		p := New(st)
		r, err := consume.NewRouter(consume.DefaultConfig(), func() (*nats.Conn, error) { return nats.Connect(e.url) }, e.auth, zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Register(r, e.js, Durable("bench"), e.cfg(Config{})); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- r.Run(context.Background()) }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err = st.WaitFor(ctx, last)
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
}
