package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/eventstore/storetest"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// TestAppendsAcrossServerRestart: writers keep appending to their sites
// while the server is shut down and started again on the same store. Sends
// pending at the disconnect fail (the request times out, or fails with
// nats.ErrDisconnected) and are sent again, identical. Every append that succeeded must be stored once at the
// sequence it returned, nothing may be stored twice or that nobody appended,
// and the only error allowed is ErrOutcomeUnknown.
func TestAppendsAcrossServerRestart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	sameServer := func(o *server.Options) { o.Port = port; o.StoreDir = dir }
	srv := natstest.StartServer(t, sameServer)
	nc, err := nats.Connect(srv.ClientURL(), nats.ReconnectWait(10*time.Millisecond), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg := testConfig()
	cfg.PublishTimeout = 500 * time.Millisecond
	cfg.PublishRetries = 6
	st, _ := newStoreOn(t, nc, cfg)
	// Sends that came back without an answer: failed at the disconnect, or
	// timed out.
	var disconnected, timedOut atomic.Int64
	st.WrapPublish(func(next eventstore.PublishFunc) eventstore.PublishFunc {
		return func(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
			ack, err := next(ctx, msg, opts...)
			switch {
			case errors.Is(err, nats.ErrDisconnected):
				disconnected.Add(1)
			case errors.Is(err, context.DeadlineExceeded):
				timedOut.Add(1)
			}
			return ack, err
		}
	})

	type result struct {
		id  string
		seq uint64
		err error
	}
	const writers = 16
	results := make([][]result, writers)
	var successes [writers]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			b := storetest.NewEvents(fmt.Sprintf("restart-%d", w))
			var last uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				e := b.Next()
				seq, err := st.Append(context.Background(), e, last)
				results[w] = append(results[w], result{e.ID, seq, err})
				if err == nil {
					last = seq
					successes[w].Add(1)
					continue
				}
				if !errors.Is(err, eventstore.ErrOutcomeUnknown) {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				// As the handlers do after an unknown outcome: start again
				// from the stream.
				for {
					if last, err = st.LastSeq(context.Background(), b.Site); err == nil {
						break
					}
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
		})
	}
	var once sync.Once
	stopAll := func() {
		once.Do(func() { close(stop) })
		wg.Wait()
	}
	defer stopAll()
	atLeast := func(n int64) func() error {
		return func() error {
			for w := range writers {
				if got := successes[w].Load(); got < n {
					return fmt.Errorf("writer %d: %d appends", w, got)
				}
			}
			return nil
		}
	}
	natstest.Eventually(t, 10*time.Second, atLeast(5))
	// Whether a send is pending at the moment the connection drops is a
	// matter of timing: restart until one was (or give up: the test then
	// fails below).
	restarts := 0
	for ; restarts < 10 && !t.Failed() && disconnected.Load()+timedOut.Load() == 0; restarts++ {
		srv.Shutdown()
		srv.WaitForShutdown()
		before := make([]int64, writers)
		for w := range writers {
			before[w] = successes[w].Load()
		}
		srv = natstest.StartServer(t, sameServer)
		natstest.Eventually(t, 30*time.Second, func() error {
			if t.Failed() { // a writer stopped; it says why
				return nil
			}
			for w := range writers {
				if got := successes[w].Load(); got < before[w]+5 {
					return fmt.Errorf("writer %d: %d appends after restart %d", w, got-before[w], restarts+1)
				}
			}
			return nil
		})
	}
	stopAll()
	if t.Failed() {
		return
	}

	var total, unknown int
	for w := range writers {
		stored := storetest.Load(t, st, events.Site(fmt.Sprintf("restart-%d", w)), 0)
		at := make(map[string]uint64, len(stored))
		for _, r := range stored {
			if _, dup := at[r.Event.ID]; dup {
				t.Fatalf("writer %d: event %s stored twice", w, r.Event.ID)
			}
			at[r.Event.ID] = r.Seq
		}
		appended := make(map[string]bool, len(results[w]))
		for _, r := range results[w] {
			appended[r.id] = true
			total++
			if r.err != nil {
				unknown++
				continue
			}
			if seq, ok := at[r.id]; !ok || seq != r.seq {
				t.Fatalf("writer %d: append of %s returned seq %d; stored at %d (found %v)", w, r.id, r.seq, seq, ok)
			}
		}
		for _, r := range stored {
			if !appended[r.Event.ID] {
				t.Fatalf("writer %d: stored event %s that was never appended", w, r.Event.ID)
			}
		}
		// Every append that succeeded was decided on the one before it: the
		// sequences a writer saw succeed must be the stream's, in order.
		var prev uint64
		for _, r := range stored {
			if r.Seq <= prev {
				t.Fatalf("writer %d: seq %d after %d", w, r.Seq, prev)
			}
			prev = r.Seq
		}
	}
	t.Logf("%d appends by %d writers across %d restarts, %d with an unknown outcome; sends unanswered: %d failed as disconnected, %d timed out",
		total, writers, restarts, unknown, disconnected.Load(), timedOut.Load())
	if disconnected.Load()+timedOut.Load() == 0 {
		t.Fatalf("no send was pending when the server went away in %d restarts: the test did not exercise a lost answer", restarts)
	}
}
