package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/internal/eventstore"
)

// The bare shape of a verify is what any verify costs on this server without
// the service: a core NATS request, one append to the site's subject with
// the site's expectation and a message ID, and a constant reply. The service
// can only be slower; its rows are read against these.
const (
	bareStream = "BENCH_BARE"
	bareEvents = "bench.bare.events."
	bareVerify = "bench.bare.verify."
)

// bareVariant is what follows the stream while the bare shape runs.
type bareVariant struct {
	suffix, title string
	ordered       bool // one ordered consumer, as a projector following from its checkpoint would
	acked         int  // explicitly acked durables, as the consumers of today
}

// bareFollowers is the most consumers a variant has: a connection each.
const bareFollowers = 3

var bareVariants = []bareVariant{
	{suffix: "", title: ""},
	{suffix: "-ordered", title: " + 1 ordered consumer", ordered: true},
	{suffix: "-acked3", title: " + 3 acked durables", acked: bareFollowers},
}

// bareSite is the responder's record of a site: the last sequence of its
// subject, which the next append expects, as the event store keeps it.
type bareSite struct {
	mu   sync.Mutex
	last uint64
}

// bareEnv is the responder and its followers on the main server. The
// requesters are the raw clients' connections.
type bareEnv struct {
	nc        *nats.Conn // the responder's: requests in, appends out, like the service's one connection
	js        jetstream.JetStream
	followers []jetstream.JetStream // one connection per following consumer
	conns     []*nats.Conn
	clients   []*nats.Conn
	names     []string
	sites     map[string]*bareSite // read-only after setup
	data      []byte
	prefix    string // of message IDs
	ids       atomic.Uint64
}

func newBareEnv(ctx context.Context, url string, clients []*nats.Conn, sites int, run string) (_ *bareEnv, err error) {
	b := &bareEnv{clients: clients, sites: map[string]*bareSite{}, data: make([]byte, rawMsgSize), prefix: run + "-bare-"}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	for i := range sites {
		name := fmt.Sprintf("site-%06d", i)
		b.names = append(b.names, name)
		b.sites[name] = &bareSite{}
	}
	for i := range bareFollowers + 1 {
		nc, err := nats.Connect(url, nats.Name(fmt.Sprintf("bare-%d", i)))
		if err != nil {
			return nil, fmt.Errorf("bare: %w", err)
		}
		b.conns = append(b.conns, nc)
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			b.nc, b.js = nc, js
		} else {
			b.followers = append(b.followers, js)
		}
	}
	cfg := eventstore.StreamConfig(eventstore.DefaultConfig())
	cfg.Name, cfg.Subjects, cfg.Description = bareStream, []string{bareEvents + ">"}, "enrollgate-bench bare verify shape"
	if _, err := b.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return nil, fmt.Errorf("bare stream: %w", err)
	}
	// One goroutine per request, as the verify endpoint runs its commands:
	// a site waiting for its append does not hold up the others.
	if _, err := b.nc.Subscribe(bareVerify+"*", func(m *nats.Msg) { go b.answer(m) }); err != nil {
		return nil, err
	}
	return b, b.nc.Flush()
}

func (b *bareEnv) close() {
	for _, nc := range b.conns {
		nc.Close()
	}
}

// answer appends for the request's site under the site's lock (the service
// serialises a site's commands likewise) and replies.
func (b *bareEnv) answer(m *nats.Msg) {
	name := m.Subject[len(bareVerify):]
	site, ok := b.sites[name]
	if !ok {
		_ = m.Respond([]byte("unknown site"))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	site.mu.Lock()
	ack, err := b.js.Publish(ctx, bareEvents+name, b.data,
		jetstream.WithMsgID(b.prefix+strconv.FormatUint(b.ids.Add(1), 10)),
		jetstream.WithExpectLastSequencePerSubject(site.last))
	if err == nil {
		site.last = ack.Sequence
	}
	site.mu.Unlock()
	if err != nil {
		_ = m.Respond([]byte("append: " + err.Error()))
		return
	}
	_ = m.Respond(constantReply)
}

// run measures the bare shape from clients requesters over sites, with v's
// consumers following the stream. The followers are created for the row and
// removed after it, once they have caught up (drain_ms), so that no other
// row pays for them.
func (b *bareEnv) run(ctx context.Context, v bareVariant, clients, sites int, dur time.Duration, seed uint64) (sample, error) {
	if clients > len(b.clients) || sites > len(b.names) {
		return sample{}, fmt.Errorf("bare: %d clients over %d sites, only %d and %d set up", clients, sites, len(b.clients), len(b.names))
	}
	f, err := b.follow(ctx, v)
	if err != nil {
		return sample{}, err
	}
	defer f.stop()
	s, err := closedLoop(clients, dur, func(w int) func() error {
		rng := mrand.New(mrand.NewPCG(seed, uint64(w)))
		nc := b.clients[w]
		return func() error {
			site := b.names[rng.IntN(sites)]
			m, err := nc.Request(bareVerify+site, verifyShapedRequest, 10*time.Second)
			if err != nil {
				return fmt.Errorf("bare verify %s: %w", site, err)
			}
			if !bytes.Equal(m.Data, constantReply) {
				return fmt.Errorf("bare verify %s: %s", site, m.Data)
			}
			return nil
		}
	})
	if f.drain != nil {
		t := time.Now()
		if derr := f.drain(ctx); derr != nil {
			return s, errors.Join(err, derr)
		}
		s.Extra = map[string]float64{"drain_ms": ms(time.Since(t))}
	}
	return s, err
}

// following is the consumers of one bare row: drain waits until they have
// taken everything stored (nil without consumers), stop removes them.
type following struct {
	drain func(ctx context.Context) error
	stop  func()
}

func (b *bareEnv) follow(ctx context.Context, v bareVariant) (following, error) {
	var stops []func() // last added first
	onStop := func(fn func()) { stops = append([]func(){fn}, stops...) }
	f := following{stop: func() {
		for _, s := range stops {
			s()
		}
	}}
	switch {
	case v.ordered:
		stream, err := b.followers[0].Stream(ctx, bareStream)
		if err != nil {
			return f, err
		}
		cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
		if err != nil {
			return f, err
		}
		// Stopping an ordered consumer leaves its server-side consumer until
		// the server's inactivity threshold: deleted at once instead.
		onStop(func() {
			if info := cons.CachedInfo(); info != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = b.js.DeleteConsumer(ctx, bareStream, info.Name)
			}
		})
		var seen atomic.Uint64
		cc, err := cons.Consume(func(m jetstream.Msg) {
			if md, err := m.Metadata(); err == nil {
				seen.Store(md.Sequence.Stream)
			}
		})
		if err != nil {
			return f, err
		}
		onStop(cc.Stop)
		f.drain = func(ctx context.Context) error {
			info, err := stream.Info(ctx)
			if err != nil {
				return err
			}
			return waitFor(ctx, "bare ordered consumer", func() (bool, error) {
				return seen.Load() >= info.State.LastSeq, nil
			})
		}
	case v.acked > 0:
		var cons []jetstream.Consumer
		for i := range v.acked {
			name := fmt.Sprintf("bare-acked-%d", i)
			c, err := b.followers[i].CreateOrUpdateConsumer(ctx, bareStream, jetstream.ConsumerConfig{Durable: name,
				AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy, MaxAckPending: 256,
				AckWait: 30 * time.Second})
			if err != nil {
				f.stop()
				return f, err
			}
			onStop(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = b.js.DeleteConsumer(ctx, bareStream, name)
			})
			cc, err := c.Consume(func(m jetstream.Msg) { _ = m.Ack() })
			if err != nil {
				f.stop()
				return f, err
			}
			onStop(cc.Stop)
			cons = append(cons, c)
		}
		f.drain = func(ctx context.Context) error {
			for _, c := range cons {
				err := waitFor(ctx, "bare acked durable", func() (bool, error) {
					info, err := c.Info(ctx)
					if err != nil {
						return false, err
					}
					return info.NumPending == 0 && info.NumAckPending == 0, nil
				})
				if err != nil {
					return err
				}
			}
			return nil
		}
	}
	return f, nil
}

// waitFor polls done until it is true, for up to two minutes.
func waitFor(ctx context.Context, what string, done func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not caught up: %w", what, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
