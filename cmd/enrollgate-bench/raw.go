package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/internal/eventstore"
)

// The raw baselines publish to their own stream, configured like the events
// stream (file storage, one replica, the same dedup window and direct gets),
// so that the only difference from the service is the service.
const (
	rawStream     = "BENCH_RAW"
	rawPrefix     = "bench.raw."
	rawMsgSize    = 400
	rawAsyncAhead = 4096 // async publishes in flight
	rawRequest    = "bench.rawreq.verify"
)

// verifyShapedRequest is a constant request of a verify request's size,
// and constantReply the constant answer of the request/reply baselines.
var (
	verifyShapedRequest = []byte(`{"passcode":"Abc123def456","attempt_id":"b1764640000-123456","source":{"ip":"10.1.226.64",` +
		`"device_id":"b1764640000-dev-123456","platform":"ios","user_agent":"MDM-Enroll/2.1 (iPhone; iOS 19.1)"}}`)
	constantReply = []byte(`{"ok":true}`)
)

// rawClients are frontends with nats.go alone: one connection each, and a
// responder on a connection of its own for the request/reply baseline.
type rawClients struct {
	conns     []*nats.Conn
	js        []jetstream.JetStream
	responder *nats.Conn
	data      []byte
}

func newRawClients(ctx context.Context, url string, n int) (*rawClients, error) {
	rc := &rawClients{data: make([]byte, rawMsgSize)}
	_, _ = rand.Read(rc.data)
	for i := range n {
		nc, err := nats.Connect(url, nats.Name(fmt.Sprintf("raw-%d", i)))
		if err != nil {
			rc.close()
			return nil, fmt.Errorf("raw client: %w", err)
		}
		rc.conns = append(rc.conns, nc)
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(rawAsyncAhead))
		if err != nil {
			rc.close()
			return nil, err
		}
		rc.js = append(rc.js, js)
	}
	var err error
	if rc.responder, err = nats.Connect(url, nats.Name("raw-responder")); err != nil {
		rc.close()
		return nil, fmt.Errorf("raw responder: %w", err)
	}
	// Answered on the subscription's goroutine: nothing to wait for.
	if _, err := rc.responder.Subscribe(rawRequest, func(m *nats.Msg) { _ = m.Respond(constantReply) }); err != nil {
		rc.close()
		return nil, err
	}
	if err := rc.responder.Flush(); err != nil {
		rc.close()
		return nil, err
	}
	cfg := eventstore.StreamConfig(eventstore.DefaultConfig())
	cfg.Name, cfg.Subjects, cfg.Description = rawStream, []string{rawPrefix + ">"}, "enrollgate-bench raw baseline"
	if _, err := rc.js[0].CreateOrUpdateStream(ctx, cfg); err != nil {
		rc.close()
		return nil, fmt.Errorf("raw stream: %w", err)
	}
	return rc, nil
}

func (rc *rawClients) close() {
	for _, nc := range rc.conns {
		nc.Close()
	}
	if rc.responder != nil {
		rc.responder.Close()
	}
}

// requestReply sends verify-sized core NATS requests from clients clients,
// each waiting for its reply before the next: the ceiling of a verify that
// stores nothing (S9).
func (rc *rawClients) requestReply(clients int, dur time.Duration) (sample, error) {
	if clients > len(rc.conns) {
		return sample{}, fmt.Errorf("raw request/reply: %d clients, only %d connected", clients, len(rc.conns))
	}
	return closedLoop(clients, dur, func(w int) func() error {
		nc := rc.conns[w]
		return func() error {
			m, err := nc.Request(rawRequest, verifyShapedRequest, 10*time.Second)
			if err == nil && !bytes.Equal(m.Data, constantReply) {
				err = fmt.Errorf("raw request/reply: got %q", m.Data)
			}
			return err
		}
	})
}

func rawSubject(rng *mrand.Rand, subjects int) string {
	if subjects <= 1 {
		return rawPrefix + "one"
	}
	return rawPrefix + "s." + strconv.Itoa(rng.IntN(subjects))
}

// sync publishes 400-byte messages with js.Publish, each client waiting for
// its ack before the next, spread over subjects subjects.
func (rc *rawClients) sync(clients, subjects int, dur time.Duration, seed uint64) (sample, error) {
	if clients > len(rc.js) {
		return sample{}, fmt.Errorf("raw sync: %d clients, only %d connected", clients, len(rc.js))
	}
	return closedLoop(clients, dur, func(w int) func() error {
		rng := mrand.New(mrand.NewPCG(seed, uint64(w)))
		js := rc.js[w]
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := js.Publish(ctx, rawSubject(rng, subjects), rc.data)
			return err
		}
	})
}

// syncExpect is sync with what the event store adds to every append: a
// Nats-Msg-Id (deduplication) and Nats-Expected-Last-Subject-Sequence (the
// optimistic concurrency check), one client, on fresh subjects of its own so
// that it knows each subject's last sequence from its acks. It tells how much
// of the gap between the service and the plain publish is JetStream's price
// for those two headers.
func (rc *rawClients) syncExpect(subjects int, dur time.Duration, seed uint64) (sample, error) {
	last := make([]uint64, subjects)
	prefix := rawPrefix + "x." + strconv.FormatUint(seed, 10) + "."
	n := 0
	return closedLoop(1, dur, func(int) func() error {
		rng := mrand.New(mrand.NewPCG(seed, 0))
		js := rc.js[0]
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			i := rng.IntN(subjects)
			n++
			ack, err := js.Publish(ctx, prefix+strconv.Itoa(i), rc.data,
				jetstream.WithMsgID(prefix+strconv.Itoa(n)), jetstream.WithExpectLastSequencePerSubject(last[i]))
			if err != nil {
				return err
			}
			last[i] = ack.Sequence
			return nil
		}
	})
}

// async publishes from one client with up to rawAsyncAhead acks
// outstanding, over subjects subjects. The latency of a message is from its
// publish to its ack.
func (rc *rawClients) async(subjects int, dur time.Duration, seed uint64) (sample, error) {
	js := rc.js[0]
	rng := mrand.New(mrand.NewPCG(seed, 0))
	type pending struct {
		f     jetstream.PubAckFuture
		start time.Time
	}
	q := make(chan pending, rawAsyncAhead*2)
	done := make(chan sample)
	go func() {
		var s sample
		for p := range q {
			select {
			case <-p.f.Ok():
				s.Lat = append(s.Lat, time.Since(p.start))
			case <-p.f.Err():
				s.Errors++
			case <-time.After(30 * time.Second):
				s.Errors++
			}
		}
		done <- s
	}()
	start := time.Now()
	var pubErr error
	for time.Since(start) < dur {
		t := time.Now()
		f, err := js.PublishAsync(rawSubject(rng, subjects), rc.data)
		if err != nil {
			pubErr = err
			break
		}
		q <- pending{f, t}
	}
	close(q)
	s := <-done
	s.Ops = len(s.Lat)
	s.finish(time.Since(start))
	return s, pubErr
}

// rawReplay reads stream from sequence 1 to last with an ordered consumer,
// as fast as nats.go delivers, reading each message's metadata (its
// sequence, which any consumer needs) and nothing else: the ceiling for a
// projection rebuild.
func rawReplay(ctx context.Context, js jetstream.JetStream, stream string, last uint64) (sample, error) {
	start := time.Now()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return sample{}, err
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return sample{}, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return sample{}, err
	}
	defer it.Stop()
	n := 0
	for {
		next, cancel := context.WithTimeout(ctx, 30*time.Second)
		msg, err := it.Next(jetstream.NextContext(next))
		cancel()
		if err != nil {
			return sample{}, fmt.Errorf("raw replay after %d messages: %w", n, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return sample{}, err
		}
		n++
		if md.Sequence.Stream >= last {
			break
		}
	}
	if uint64(n) != last {
		return sample{}, errors.New("raw replay: message count differs from the last sequence")
	}
	s := sample{Ops: n}
	s.finish(time.Since(start))
	return s, nil
}
