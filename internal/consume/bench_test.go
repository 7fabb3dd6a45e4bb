package consume_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/consume"
)

// benchN is the number of events pre-published for a throughput benchmark:
// ENROLLGATE_BENCH_CONSUME_EVENTS, default 20,000.
func benchN(b *testing.B) int {
	if s := os.Getenv("ENROLLGATE_BENCH_CONSUME_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("ENROLLGATE_BENCH_CONSUME_EVENTS=%q: want a positive integer", s)
		}
		return n
	}
	return 20_000
}

// publishBulk stores n events over 1,000 sites with async publishes and
// returns the last sequence.
func (e *env) publishBulk(tb testing.TB, n int) uint64 {
	tb.Helper()
	var last uint64
	var futures []jetstream.PubAckFuture
	flush := func() {
		for _, f := range futures {
			select {
			case ack := <-f.Ok():
				last = max(last, ack.Sequence)
			case err := <-f.Err():
				tb.Fatalf("publish: %v", err)
			case <-time.After(30 * time.Second):
				tb.Fatal("publish ack timeout")
			}
		}
		futures = futures[:0]
	}
	for i := range n {
		site := events.Site(fmt.Sprintf("site-%04d", i%1000))
		ev := events.Event{ID: ulid.Make().String(), Site: site, OccurredAt: time.Now(), Actor: events.Actor{Kind: events.ActorDevice, ID: "d"},
			Data: events.EnrollmentAttemptFailed{PasscodeID: "p1", FailedAttempts: i, MaxFailedAttempts: 1000,
				Source: events.Source{IP: "10.0.0.1", DeviceID: "dev-1", Platform: "ios", UserAgent: "MDM-Enroll/2.1"}}}
		b, err := events.Encode(ev)
		if err != nil {
			tb.Fatal(err)
		}
		msg := &nats.Msg{Subject: events.Subject(site), Data: b, Header: nats.Header{}}
		msg.Header.Set(events.HeaderEventType, string(ev.Type()))
		msg.Header.Set(nats.MsgIdHdr, ev.ID)
		f, err := e.js.PublishMsgAsync(msg)
		if err != nil {
			tb.Fatal(err)
		}
		futures = append(futures, f)
		if len(futures) == 2000 {
			flush()
		}
	}
	flush()
	return last
}

// BenchmarkConsumeThroughput measures, per iteration, how long durable
// consumers need to handle and acknowledge N pre-published events, for the
// consumer modes side by side in the same run (each iteration measures every
// mode, on fresh durables). The handler does nothing but check the order, so
// this is the cost of the consuming machinery itself. Run with -benchtime=3x.
func BenchmarkConsumeThroughput(b *testing.B) {
	n := benchN(b)
	e := newEnv(b)
	last := e.publishBulk(b, n)
	for _, durables := range []int{1, 3} {
		for _, pending := range []int{1, consume.DefaultConfig().MaxAckPending} {
			b.Run(fmt.Sprintf("durables=%d/maxackpending=%d", durables, pending), func(b *testing.B) {
				e.cfg.MaxAckPending = pending
				for range b.N {
					start := time.Now()
					runConsumers(b, e, durables, last)
					d := time.Since(start)
					b.ReportMetric(float64(n)/d.Seconds(), "events/s")
				}
			})
		}
	}
}

// runConsumers runs a router with durables fresh durables until each has
// acknowledged every event up to last.
func runConsumers(b *testing.B, e *env, durables int, last uint64) {
	b.Helper()
	r, err := consume.NewRouter(e.cfg, e.connect, e.auth, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	var done atomic.Int64
	all := make(chan struct{})
	for i := range durables {
		var prev uint64
		name := fmt.Sprintf("bench-%s-%d", strconv.FormatInt(time.Now().UnixNano(), 36), i)
		if err := r.AddHandler(name, func(_ context.Context, rec events.Record) error {
			if rec.Seq <= prev {
				return fmt.Errorf("seq %d after %d", rec.Seq, prev)
			}
			prev = rec.Seq
			if rec.Seq == last && done.Add(1) == int64(durables) {
				close(all)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	ran := make(chan error, 1)
	go func() { ran <- r.Run(context.Background()) }()
	<-r.Running()
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		b.Fatal("consumers did not finish in 5 minutes")
	}
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	if err := <-ran; err != nil {
		b.Fatal(err)
	}
}
