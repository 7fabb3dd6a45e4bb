package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
)

// StreamName is events.StreamName, kept only until the packages others are
// rebuilding (internal/consume, cmd) name events.StreamName; remove it then.
const StreamName = events.StreamName

// Config tunes the stream and the store.
type Config struct {
	// Replicas of the stream: 1 on a single server, 3 in a cluster.
	Replicas int
	// Duplicates is the server's deduplication window on Nats-Msg-Id. It must
	// cover every re-send of one append (see Validate), so that a re-send of a
	// stored event is recognised as its duplicate.
	Duplicates time.Duration
	// PublishTimeout bounds one publish attempt; after it the outcome is
	// unknown and the publish is sent again.
	PublishTimeout time.Duration
	// PublishRetries is how many times a publish with an unknown outcome is
	// sent again before Append gives up with an error that is not a conflict.
	PublishRetries int
	// RetryWait is the pause before a re-send.
	RetryWait time.Duration
	// ResolveScanMax bounds how many of a site's events Append reads to find
	// out whether a re-sent event was stored after all; beyond it the outcome
	// is reported unknown rather than guessed.
	ResolveScanMax int
	// LoadTimeout bounds one Load (and one resolution scan).
	LoadTimeout time.Duration
	// LoadIdleTimeout: a Load's consumer that delivers nothing for this long
	// is replaced (see Store.Load); LoadRestarts bounds the replacements.
	LoadIdleTimeout time.Duration
	LoadRestarts    int
	// LoadBatch is how many messages Load asks the server for at a time.
	LoadBatch int
	// DirectReadMax: a Load whose gap (last stream sequence of the site minus
	// afterSeq) is at most this is read with direct gets, one per event,
	// instead of creating a consumer; 0 always uses a consumer.
	DirectReadMax int
}

// DefaultConfig returns the defaults for a single server.
func DefaultConfig() Config {
	return Config{
		Replicas:        1,
		Duplicates:      2 * time.Minute,
		PublishTimeout:  5 * time.Second,
		PublishRetries:  3,
		RetryWait:       50 * time.Millisecond,
		ResolveScanMax:  10_000,
		LoadTimeout:     time.Minute,
		LoadBatch:       1000,
		LoadIdleTimeout: time.Second,
		LoadRestarts:    5,
		DirectReadMax:   16,
	}
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas must be 1 to 5, got %d", c.Replicas))
	}
	if c.PublishTimeout <= 0 {
		errs = append(errs, fmt.Errorf("publish timeout must be positive, got %s", c.PublishTimeout))
	}
	if c.PublishRetries < 0 {
		errs = append(errs, fmt.Errorf("publish retries must not be negative, got %d", c.PublishRetries))
	}
	if c.RetryWait < 0 {
		errs = append(errs, fmt.Errorf("retry wait must not be negative, got %s", c.RetryWait))
	}
	// Every send of one append must fall inside the dedup window of the
	// first, or a re-send on a replicated stream could be stored twice.
	if span := time.Duration(c.PublishRetries+1) * (c.PublishTimeout + c.RetryWait); c.Duplicates < span {
		errs = append(errs, fmt.Errorf("duplicates window %s must cover all publish attempts (%s)", c.Duplicates, span))
	}
	if c.ResolveScanMax < 1 {
		errs = append(errs, fmt.Errorf("resolve scan max must be at least 1, got %d", c.ResolveScanMax))
	}
	if c.LoadTimeout <= 0 {
		errs = append(errs, fmt.Errorf("load timeout must be positive, got %s", c.LoadTimeout))
	}
	if c.LoadIdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("load idle timeout must be positive, got %s", c.LoadIdleTimeout))
	}
	if c.LoadRestarts < 0 {
		errs = append(errs, fmt.Errorf("load restarts must not be negative, got %d", c.LoadRestarts))
	}
	if c.LoadBatch < 1 {
		errs = append(errs, fmt.Errorf("load batch must be at least 1, got %d", c.LoadBatch))
	}
	if c.DirectReadMax < 0 {
		errs = append(errs, fmt.Errorf("direct read max must not be negative, got %d", c.DirectReadMax))
	}
	return errors.Join(errs...)
}

// StreamConfig returns the configuration of the events stream.
func StreamConfig(cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        events.StreamName,
		Description: "enrollgate event log, one subject per site",
		Subjects:    []string{events.SubjectAll},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		// The log is the system of record: nothing ages out or is evicted,
		// and nobody may delete or purge history.
		MaxAge:            0,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		MaxMsgSize:        -1,
		// Should a limit ever be reached (an account quota), refuse the new
		// event rather than drop an old one.
		Discard:     jetstream.DiscardNew,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowRollup: false,
		Duplicates:  cfg.Duplicates,
		// Direct gets make the per-append expectation read and short
		// catch-ups cheap on one replica. A replicated stream's followers
		// answer them from behind the leader (within milliseconds of an
		// append), so there every get goes to the leader, which has
		// applied everything it acknowledged: nats.go sends the leader's
		// get when the stream allows no direct get.
		AllowDirect: cfg.Replicas == 1,
	}
}

// EnsureStream creates the events stream, or updates an existing one to the
// configuration; calling it again with the same configuration is a no-op.
// It records in the stream's metadata (MetaMACRequiredFrom) the first
// sequence from which every message must carry a MAC: 1 for a new stream,
// the last sequence + 1 the first time it runs on a stream of an earlier
// version; once recorded, it is kept. Only the service may call it (the
// boundary decides which unsigned messages are trusted).
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.Stream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("event store config: %w", err)
	}
	sc := StreamConfig(cfg)
	for range 3 {
		cur, err := js.Stream(ctx, events.StreamName)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			sc.Metadata = map[string]string{MetaMACRequiredFrom: "1"}
			s, err := js.CreateStream(ctx, sc)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				continue // another replica created it meanwhile: update that one
			}
			if err != nil {
				return nil, fmt.Errorf("ensure stream %s: create: %w", events.StreamName, err)
			}
			return s, nil
		case err != nil:
			return nil, fmt.Errorf("ensure stream %s: %w", events.StreamName, err)
		}
		info := cur.CachedInfo()
		sc.Metadata = make(map[string]string, len(info.Config.Metadata)+1)
		for k, v := range info.Config.Metadata {
			if !strings.HasPrefix(k, "_nats.") { // the server's own, which it sets itself
				sc.Metadata[k] = v
			}
		}
		if sc.Metadata[MetaMACRequiredFrom] == "" {
			// Everything stored so far was written without MACs.
			sc.Metadata[MetaMACRequiredFrom] = strconv.FormatUint(info.State.LastSeq+1, 10)
		}
		s, err := js.UpdateStream(ctx, sc)
		if err != nil {
			return nil, fmt.Errorf("ensure stream %s: update: %w", events.StreamName, err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("ensure stream %s: created and deleted concurrently", events.StreamName)
}
