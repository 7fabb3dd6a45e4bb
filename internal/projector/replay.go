package projector

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/readstore"
)

// Durable returns the name of one service instance's projection: its dead
// letters go to <DeadLetterPrefix>.<name>. instance is stable for a data dir
// (see cmd/enrollgate). The live projection is an ordered consumer, not a
// durable: earlier versions' durables of this name (InactiveThreshold
// seven days) are deleted by the server once nobody pulls from them.
func Durable(instance string) string { return "projections-" + instance }

// Config configures replays and the live projection.
type Config struct {
	// Stream is the event stream. Default ENROLLGATE_EVENTS.
	Stream string
	// FilterSubject selects the events. Default events.SubjectAll.
	FilterSubject string
	// BatchSize is how many records one read-model transaction applies at
	// most. Default 4096.
	BatchSize int
	// PullMaxMessages is the ordered consumer's buffer. Default 4096.
	PullMaxMessages int
	// IdleTimeout fails a replay when no message arrives for this long
	// although the stream said more were there. Default 30 s. The live
	// projection waits without end.
	IdleTimeout time.Duration
	// RetryInitialInterval and RetryMaxInterval pace the live projection's
	// new starts from the checkpoint after a failure, doubling from the
	// first to the second, which is also how often a projection held at an
	// event of a newer version tries again. Defaults 100 ms and 30 s.
	RetryInitialInterval, RetryMaxInterval time.Duration
	// Log hears of the live projection's failures and holds.
	Log zerolog.Logger
	// Auth tells the service's events from messages it did not write, which
	// a replay skips. Required.
	Auth consume.Authenticator
}

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = "ENROLLGATE_EVENTS"
	}
	if c.FilterSubject == "" {
		c.FilterSubject = events.SubjectAll
	}
	if c.BatchSize == 0 {
		c.BatchSize = 4096
	}
	if c.PullMaxMessages == 0 {
		c.PullMaxMessages = 4096
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.RetryInitialInterval == 0 {
		c.RetryInitialInterval = 100 * time.Millisecond
	}
	if c.RetryMaxInterval == 0 {
		c.RetryMaxInterval = 30 * time.Second
	}
}

// Validate reports every problem of the configuration (after defaults).
func (c Config) Validate() error {
	c.setDefaults()
	var errs []error
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("projector: batch size must be at least 1, got %d", c.BatchSize))
	}
	if c.PullMaxMessages < 1 {
		errs = append(errs, fmt.Errorf("projector: pull max messages must be at least 1, got %d", c.PullMaxMessages))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("projector: idle timeout must not be negative, got %s", c.IdleTimeout))
	}
	if c.RetryInitialInterval < 0 || c.RetryMaxInterval < c.RetryInitialInterval {
		errs = append(errs, fmt.Errorf("projector: retry intervals must be 0 < %s <= %s", c.RetryInitialInterval, c.RetryMaxInterval))
	}
	if c.Auth == nil {
		errs = append(errs, errors.New("projector: an authenticator is required"))
	}
	return errors.Join(errs...)
}

// Poison is a stored message that is not a valid event: skipped by a replay.
// Forged is set for one the service did not write (no valid MAC, or
// unsigned and not an event).
type Poison struct {
	Seq     uint64
	Subject string
	Reason  string
	Forged  bool
	data    []byte // the payload, for the live projection's dead letter
}

// Report says what a replay did. The caller logs it.
type Report struct {
	From, To uint64 // the sequences replayed: From is the first asked for, To the stream's last at the start
	Applied  uint64 // records handed to the store (it skips those at or below its checkpoint)
	Poison   []Poison
	// Stopped is set when the replay stopped before To at an authentic event
	// of a type this build does not know (written by a newer version): it
	// applied everything before it and skipped nothing, so the read model
	// is a true prefix of the log; the live consumer holds at the same
	// event until the process is upgraded.
	Stopped *Poison
	Elapsed time.Duration
	// ApplyTime is the part of Elapsed spent in the store's transactions
	// (the rest is reading and decoding, overlapped with it).
	ApplyTime time.Duration
	// Rebuilt is set by OpenStore when it rebuilt the read model, with the
	// reason.
	Rebuilt       bool
	RebuildReason error
}

// errUnknownType stops a replay: see Report.Stopped.
var errUnknownType = errors.New("event type unknown to this version")

// decodeMessage turns a stored message into a record, after authenticating
// it: forged is true for a message the service did not write (it fails the
// Authenticator or is unsigned and not an event of its subject); an error
// that is not forged is poison, except one wrapping errUnknownType.
func decodeMessage(auth consume.Authenticator, subject string, seq uint64, header nats.Header, data []byte) (rec events.Record, forged bool, err error) {
	if err := auth.Authenticate(subject, seq, header, data); err != nil {
		return events.Record{}, true, err
	}
	rec, err = events.DecodeStored(subject, seq, header, data)
	switch {
	case errors.Is(err, events.ErrForged):
		return events.Record{}, true, err
	case errors.Is(err, events.ErrUnknownType):
		return events.Record{}, false, fmt.Errorf("%w: %w", errUnknownType, err)
	}
	return rec, false, err
}

// CatchUp applies to store every event after its checkpoint up to the
// stream's last sequence at the time of the call.
func CatchUp(ctx context.Context, js jetstream.JetStream, store *readstore.Store, cfg Config) (Report, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	start := time.Now()
	from := store.LastApplied() + 1
	stream, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return Report{}, fmt.Errorf("catch up: stream %s: %w", cfg.Stream, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return Report{}, fmt.Errorf("catch up: stream %s info: %w", cfg.Stream, err)
	}
	rep := Report{From: from, To: info.State.LastSeq}
	if rep.To < from {
		rep.Elapsed = time.Since(start)
		return rep, nil
	}
	rep.Stopped, err = replay(ctx, stream, from, rep.To, cfg, func(b batch) error {
		if len(b.recs) == 0 {
			return nil
		}
		rep.Applied += uint64(len(b.recs))
		t := time.Now()
		err := store.ApplyPrepared(b.recs...)
		rep.ApplyTime += time.Since(t)
		return err
	}, func(p Poison) error {
		p.data = nil
		rep.Poison = append(rep.Poison, p)
		return nil
	})
	rep.Elapsed = time.Since(start)
	if err != nil {
		return rep, fmt.Errorf("catch up %s from seq %d to %d: %w", store.Path(), from, rep.To, err)
	}
	return rep, nil
}

// Rebuild builds a fresh read model at path (removing any file there) from
// sequence 1 of the stream, with storeCfg for everything but the path and
// fsync (off during the bulk load, one sync at the end). The caller closes
// it (and moves it in place while no service runs on the data dir).
func Rebuild(ctx context.Context, js jetstream.JetStream, storeCfg readstore.Config, path string, cfg Config) (*readstore.Store, Report, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, Report{}, fmt.Errorf("rebuild: remove %s: %w", path, err)
	}
	bulk := storeCfg
	bulk.Path, bulk.NoSync = path, true
	st, err := readstore.Open(bulk)
	if err != nil {
		return nil, Report{}, fmt.Errorf("rebuild: %w", err)
	}
	rep, err := CatchUp(ctx, js, st, cfg)
	if err == nil {
		err = st.Sync()
	}
	// Reopen with the caller's fsync setting.
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, rep, fmt.Errorf("rebuild %s: %w", path, err)
	}
	live := storeCfg
	live.Path = path
	st, err = readstore.Open(live)
	if err != nil {
		return nil, rep, fmt.Errorf("rebuild: reopen %s: %w", path, err)
	}
	return st, rep, nil
}

// OpenStore opens the durable read model at storeCfg.Path and catches it up
// with the stream. A file that is corrupt, or was left unsynced by an OS
// restart, is moved aside (to <path>.broken-<unix time>) and rebuilt.
func OpenStore(ctx context.Context, js jetstream.JetStream, storeCfg readstore.Config, cfg Config) (*readstore.Store, Report, error) {
	st, err := readstore.Open(storeCfg)
	if err == nil {
		rep, err := CatchUp(ctx, js, st, cfg)
		if err != nil {
			_ = st.Close()
			return nil, rep, err
		}
		return st, rep, nil
	}
	if !errors.Is(err, readstore.ErrCorrupt) && !errors.Is(err, readstore.ErrUnclean) {
		return nil, Report{}, err
	}
	reason := err
	aside := fmt.Sprintf("%s.broken-%d", storeCfg.Path, time.Now().Unix())
	if rerr := os.Rename(storeCfg.Path, aside); rerr != nil {
		return nil, Report{}, fmt.Errorf("move broken read model aside (%w): %w", reason, rerr)
	}
	st, rep, err := Rebuild(ctx, js, storeCfg, storeCfg.Path, cfg)
	rep.Rebuilt, rep.RebuildReason = true, reason
	return st, rep, err
}

// chunk is a run of consecutive messages decoded by one worker.
type chunk struct {
	msgs   []rawMsg
	recs   []readstore.Prepared
	poison []Poison
	stop   *Poison // the first event of an unknown type; recs end before it
	last   uint64  // the stream sequence of the last message
	flush  bool    // the stream had nothing more: write what is batched
	done   chan struct{}
}

// batch is what one read-model transaction applies: recs, and the
// projection passes every sequence up to upTo (poison included).
type batch struct {
	recs []readstore.Prepared
	upTo uint64
}

type rawMsg struct {
	subject string
	seq     uint64
	header  nats.Header
	data    []byte
}

func (c *chunk) decode(auth consume.Authenticator) {
	c.recs = make([]readstore.Prepared, 0, len(c.msgs))
	for _, m := range c.msgs {
		rec, forged, err := decodeMessage(auth, m.subject, m.seq, m.header, m.data)
		if errors.Is(err, errUnknownType) {
			c.stop = &Poison{Seq: m.seq, Subject: m.subject, Reason: err.Error()}
			break
		}
		if err != nil {
			c.poison = append(c.poison, Poison{Seq: m.seq, Subject: m.subject, Reason: err.Error(), Forged: forged, data: m.data})
			continue
		}
		// Encoding the audit entry here takes it off the single applying
		// goroutine.
		c.recs = append(c.recs, readstore.Prepare(rec))
	}
	c.msgs = nil
	close(c.done)
}

// chunkSize is how many messages one decode job holds: large enough to make
// the hand-off cheap, small enough to keep every worker busy.
const chunkSize = 256

// replay reads [from, to] with an ordered consumer; to 0 follows the stream
// without end, writing a batch whenever the stream has nothing more. Four
// stages run at once: the calling goroutine reads messages and cuts them
// into chunks (read), workers (one per CPU) decode and prepare chunks, a
// collector takes the prepared chunks in stream order, hands their poison to
// poison and cuts batches of cfg.BatchSize (collect), and an applier applies
// each batch in one transaction. At an event of a type this build does not
// know it applies what came before and stops, returning that event.
func replay(ctx context.Context, stream jetstream.Stream, from, to uint64, cfg Config,
	apply func(batch) error, poison func(Poison) error) (*Poison, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{cfg.FilterSubject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from,
	})
	if err != nil {
		return nil, fmt.Errorf("ordered consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(cfg.PullMaxMessages))
	if err != nil {
		return nil, fmt.Errorf("messages: %w", err)
	}
	defer it.Stop()

	workers := max(runtime.GOMAXPROCS(0), 1)
	p := &pipeline{cfg: cfg, ctx: ctx, cancel: cancel,
		jobs: make(chan *chunk, workers), ordered: make(chan *chunk, 2*workers+2), batches: make(chan batch, 1)}
	// Reading stops early, without failing the replay, at an unknown type.
	p.readCtx, p.stopReading = context.WithCancel(ctx)
	defer p.stopReading()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range p.jobs {
				c.decode(cfg.Auth)
			}
		}()
	}
	// The applier takes full batches, so that decoding goes on while a
	// transaction runs.
	applyErr := make(chan error, 1)
	go func() {
		var err error
		for b := range p.batches {
			if err != nil {
				continue // drain
			}
			if err = apply(b); err != nil {
				cancel()
			}
		}
		applyErr <- err
	}()
	go p.collect(poison)
	readErr := p.read(it, to, func() {
		close(p.jobs)
		wg.Wait()
		close(p.ordered)
	})
	aerr := <-applyErr // after the collector is done with stopped and poisonErr
	switch {
	case aerr != nil:
		return nil, fmt.Errorf("apply: %w", aerr)
	case p.poisonErr != nil:
		return nil, fmt.Errorf("dead letter: %w", p.poisonErr)
	case p.stopped != nil:
		return p.stopped, nil
	}
	return nil, readErr
}

// pipeline is one replay's stages (replay).
type pipeline struct {
	cfg         Config
	ctx         context.Context
	cancel      context.CancelFunc
	readCtx     context.Context
	stopReading context.CancelFunc
	jobs        chan *chunk // to the workers
	ordered     chan *chunk // the same chunks, in stream order, to the collector
	batches     chan batch  // to the applier
	// Set by the collector; read once the applier is done.
	stopped   *Poison
	poisonErr error
}

// collect takes the decoded chunks in stream order, hands their poison to
// poison and their records, in batches, to the applier.
func (p *pipeline) collect(poison func(Poison) error) {
	defer close(p.batches)
	// Batches grow as records come: a live projection flushes after every
	// event when idle, and a batch's full capacity each time is a large
	// allocation per event.
	var b batch
	for c := range p.ordered {
		<-c.done
		if p.ctx.Err() != nil || p.stopped != nil || p.poisonErr != nil {
			continue // drain so that the reader never blocks
		}
		for _, pz := range c.poison {
			if p.poisonErr = poison(pz); p.poisonErr != nil {
				p.cancel()
				break
			}
		}
		if p.poisonErr != nil {
			continue
		}
		b.recs = append(b.recs, c.recs...)
		b.upTo = c.last
		if c.stop != nil {
			p.stopped = c.stop
			b.upTo = c.stop.Seq - 1
			p.stopReading()
			continue
		}
		if len(b.recs) >= p.cfg.BatchSize || c.flush {
			p.batches <- b
			b = batch{}
		}
	}
	if p.ctx.Err() == nil && b.upTo > 0 {
		p.batches <- b
	}
}

// read reads messages up to to (0: without end) and cuts them into chunks
// for the workers and the collector; done runs when it stops.
func (p *pipeline) read(it jetstream.MessagesContext, to uint64, done func()) error {
	defer done()
	// Next ignores its context while the ordered consumer resets itself
	// (a stream that went away); stopping the iterator ends that.
	defer context.AfterFunc(p.readCtx, it.Stop)()
	cur := &chunk{done: make(chan struct{})}
	for {
		wait, cancelWait := p.readCtx, context.CancelFunc(func() {})
		if to != 0 {
			wait, cancelWait = context.WithTimeout(p.readCtx, p.cfg.IdleTimeout)
		}
		msg, err := it.Next(jetstream.NextContext(wait))
		cancelWait()
		if err != nil {
			if p.readCtx.Err() != nil {
				return p.readCtx.Err()
			}
			return fmt.Errorf("next message: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("message metadata: %w", err)
		}
		seq := md.Sequence.Stream
		cur.msgs = append(cur.msgs, rawMsg{subject: msg.Subject(), seq: seq, header: msg.Headers(), data: msg.Data()})
		cur.last = seq
		// A replay ends at to, or where the stream ends first.
		end := to != 0 && (seq >= to || md.NumPending == 0)
		if end || md.NumPending == 0 || len(cur.msgs) >= chunkSize {
			cur.flush = end || md.NumPending == 0
			if err := p.send(cur); err != nil || end {
				return err
			}
			cur = &chunk{done: make(chan struct{})}
		}
	}
}

// send hands c to the collector, then to a worker.
func (p *pipeline) send(c *chunk) error {
	// ordered first: the collector waits on done, which a worker closes
	// after it has taken the job.
	select {
	case p.ordered <- c:
	case <-p.readCtx.Done():
		return p.readCtx.Err()
	}
	select {
	case p.jobs <- c:
	case <-p.readCtx.Done():
		close(c.done) // never decoded; the collector is draining
		return p.readCtx.Err()
	}
	return nil
}
