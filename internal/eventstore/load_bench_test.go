package eventstore_test

import (
	"context"
	"testing"

	"github.com/enrollgate/enrollgate/internal/natstest"
)

// BenchmarkLoad20k measures a cold load of a site with 20,000 events.
func BenchmarkLoad20k(b *testing.B) {
	srv := natstest.StartServer(b)
	st, js := newStore(b, srv, testConfig())
	longHistory(b, js, "load-20k", 20_000)
	b.ResetTimer()
	for b.Loop() {
		recs, err := st.Load(context.Background(), "load-20k", 0)
		if err != nil || len(recs) != 20_000 {
			b.Fatalf("%d records, %v", len(recs), err)
		}
	}
}
