package consume

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/startup"
)

// Defaults of the event log this package consumes. They repeat the contract of
// DESIGN.md rather than import the event store, which does not depend on this
// package either.
const (
	// DefaultStream is the event stream.
	DefaultStream = "ENROLLGATE_EVENTS"
	// DefaultDeadLetterPrefix starts the dead-letter subjects:
	// enrollgate.deadletter.<durable>.
	DefaultDeadLetterPrefix = "enrollgate.deadletter"
	// DefaultDeadLetterStream keeps the dead letters, so that a poison message
	// moved aside is never lost even when nobody listens.
	DefaultDeadLetterStream = "ENROLLGATE_DEADLETTER"
	// MinAckWait is the shortest Config.AckWait: the in-progress reports,
	// every AckWait/4, must reach the server well within it.
	MinAckWait = 2 * time.Second
)

// Config tunes the Router.
type Config struct {
	// Stream is the JetStream stream of the event log.
	Stream string
	// FilterSubject selects the events every consumer receives.
	FilterSubject string
	// DeadLetterPrefix starts the subject a poison message is moved to:
	// <DeadLetterPrefix>.<durable>.
	DeadLetterPrefix string
	// DeadLetterStream is the stream NewRouter ensures on
	// <DeadLetterPrefix>.>; empty leaves the stream to the operator (a
	// dead-letter publish fails, and the poison message is redelivered,
	// until one exists).
	DeadLetterStream string
	// DeadLetterReplicas is the replica count of DeadLetterStream.
	DeadLetterReplicas int
	// DeadLetterMaxAge bounds how long dead letters are kept; 0 keeps them.
	DeadLetterMaxAge time.Duration
	// AckWait is the consumer's AckWait: a message neither acknowledged
	// nor reported in progress (the subscriber does that every AckWait/4
	// while its handler runs) in this time is redelivered, to any process.
	// So it bounds how long the events a SIGKILLed replica had wait for
	// another: a few seconds.
	AckWait time.Duration
	// HandlerTimeout bounds one delivery of an event to the router (the
	// handler call and its in-process retries): the message's context is
	// cancelled when it passes, and a call that then fails is Nacked. It
	// may exceed AckWait.
	HandlerTimeout time.Duration
	// RetryInitialInterval is the first delay after a handler error (in the
	// Retry middleware, and again as the NakWithDelay after a Nack); each
	// further failure of the same event doubles it, up to RetryMaxInterval.
	RetryInitialInterval time.Duration
	// RetryMaxInterval caps the delay between two tries of one event.
	RetryMaxInterval time.Duration
	// InProcessRetries is how many times the Retry middleware calls a failed
	// handler again, from RetryInitialInterval on, within one delivery of
	// an event (bounded by HandlerTimeout). After that the router Nacks it
	// and the server delivers it again after a delay doubling with each
	// delivery from RetryInitialInterval up to RetryMaxInterval: retries are
	// unbounded, an event is never skipped.
	InProcessRetries int
	// MaxAckPending is the consumer's MaxAckPending: how many messages are
	// out unacknowledged, that is handled at once, per durable.
	MaxAckPending int
	// CloseTimeout bounds how long Close waits for running handlers.
	CloseTimeout time.Duration
	// StartTimeout bounds how long NewRouter and AddHandler keep retrying
	// to create the dead-letter stream and the consumers (internal/startup);
	// 0 tries once.
	StartTimeout time.Duration
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		Stream:               DefaultStream,
		FilterSubject:        events.SubjectAll,
		DeadLetterPrefix:     DefaultDeadLetterPrefix,
		DeadLetterStream:     DefaultDeadLetterStream,
		DeadLetterReplicas:   1,
		DeadLetterMaxAge:     0,
		AckWait:              3 * time.Second,
		HandlerTimeout:       20 * time.Second,
		RetryInitialInterval: 100 * time.Millisecond,
		RetryMaxInterval:     30 * time.Second,
		InProcessRetries:     3,
		MaxAckPending:        256,
		CloseTimeout:         10 * time.Second,
		StartTimeout:         startup.DefaultTimeout,
	}
}

// Validate reports every problem of the configuration.
func (c Config) Validate() error {
	var errs []error
	if err := validName("stream", c.Stream); err != nil {
		errs = append(errs, err)
	}
	if c.FilterSubject == "" {
		errs = append(errs, errors.New("filter subject is required"))
	}
	if c.DeadLetterPrefix == "" || strings.ContainsAny(c.DeadLetterPrefix, "*> \t") || strings.HasSuffix(c.DeadLetterPrefix, ".") {
		errs = append(errs, fmt.Errorf("dead-letter prefix %q must be a literal subject such as %q", c.DeadLetterPrefix, DefaultDeadLetterPrefix))
	}
	if c.DeadLetterStream != "" {
		if err := validName("dead-letter stream", c.DeadLetterStream); err != nil {
			errs = append(errs, err)
		}
		if c.DeadLetterReplicas < 1 || c.DeadLetterReplicas > 5 {
			errs = append(errs, fmt.Errorf("dead-letter replicas must be 1 to 5, got %d", c.DeadLetterReplicas))
		}
	}
	if c.DeadLetterMaxAge < 0 {
		errs = append(errs, fmt.Errorf("dead-letter max age must not be negative, got %s", c.DeadLetterMaxAge))
	}
	if c.HandlerTimeout <= 0 {
		errs = append(errs, fmt.Errorf("handler timeout must be positive, got %s", c.HandlerTimeout))
	}
	if c.AckWait < MinAckWait {
		errs = append(errs, fmt.Errorf("ack wait (%s) must be at least %s", c.AckWait, MinAckWait))
	}
	if c.RetryInitialInterval <= 0 {
		errs = append(errs, fmt.Errorf("retry initial interval must be positive, got %s", c.RetryInitialInterval))
	}
	if c.RetryMaxInterval < c.RetryInitialInterval {
		errs = append(errs, fmt.Errorf("retry max interval (%s) must be at least the initial interval (%s)", c.RetryMaxInterval, c.RetryInitialInterval))
	}
	if c.InProcessRetries < 0 {
		errs = append(errs, fmt.Errorf("in-process retries must not be negative, got %d", c.InProcessRetries))
	}
	if c.MaxAckPending < 1 || c.MaxAckPending > 10000 {
		errs = append(errs, fmt.Errorf("max ack pending must be 1 to 10000, got %d", c.MaxAckPending))
	}
	if c.CloseTimeout <= 0 {
		errs = append(errs, fmt.Errorf("close timeout must be positive, got %s", c.CloseTimeout))
	}
	return errors.Join(errs...)
}

// ValidateDurable checks a durable consumer name: a JetStream consumer name
// and one subject token of the dead-letter subject.
func ValidateDurable(durable string) error { return validName("durable", durable) }

func validName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is required", what)
	}
	if len(name) > 64 {
		return fmt.Errorf("%s name %q is longer than 64 characters", what, name[:64])
	}
	for _, r := range name {
		ok := r == '-' || r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("%s name %q may hold only letters, digits, '-' and '_'", what, name)
		}
	}
	return nil
}

// retryDelay is the delay before the n-th retry of an event (n from 1):
// doubling from initial, capped at max.
func retryDelay(n uint64, initial, max time.Duration) time.Duration {
	d := initial
	for i := uint64(1); i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
