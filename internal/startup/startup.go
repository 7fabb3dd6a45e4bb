// Package startup retries what the service creates on JetStream at start
// (streams, consumers, KV buckets) until a start deadline, so that replicas
// started together against a fresh cluster all come up: a cluster that is
// still electing leaders or placing peers answers late, not at all, or with
// a temporary error. Only a configuration error (the resource exists with a
// configuration this one cannot become) ends the start at once.
package startup

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// DefaultTimeout is how long a start keeps trying by default.
const DefaultTimeout = 2 * time.Minute

// Backoff between attempts: doubling from First up to Max, each wait drawn
// from its upper half, so that replicas started together spread out.
const (
	First = 200 * time.Millisecond
	Max   = 5 * time.Second
	// Attempt bounds one attempt, so that a request the cluster never
	// answers is sent again rather than waited on until the deadline.
	Attempt = 5 * time.Second
)

// Retry calls fn until it succeeds, returns a configuration error
// (Permanent), or ctx ends; each attempt gets a context bounded by Attempt.
// Every failed attempt that will be retried is logged at warn level with
// what is being done. The error returned wraps fn's last error.
func Retry(ctx context.Context, log zerolog.Logger, what string, fn func(context.Context) error) error {
	wait := First
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, Attempt)
		err := fn(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Info().Str("what", what).Int("attempts", attempt).Msg("start-up step done after retries")
			}
			return nil
		}
		if Permanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: gave up at the start deadline after %d attempts: %w", what, attempt, err)
		}
		d := wait/2 + rand.N(wait/2+1)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
			d = max(0, time.Until(dl))
		}
		log.Warn().Err(err).Str("what", what).Int("attempt", attempt).Str("retry_in", d.Round(time.Millisecond).String()).
			Msg("start-up step failed; retrying")
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up at the start deadline after %d attempts: %w", what, attempt, err)
		case <-time.After(d):
		}
		wait = min(2*wait, Max)
	}
}

// permanentCodes are JetStream API error codes that a retry cannot change:
// the request or the existing resource's configuration is at fault.
var permanentCodes = map[jetstream.ErrorCode]bool{
	10052: true, // invalid stream configuration (e.g. an update that cannot apply)
	10074: true, // replicas > 1 on a server that is not clustered
	10012: true, // consumer create error (its configuration)
}

// transientCodes are 4xx codes that a cluster still forming answers.
var transientCodes = map[jetstream.ErrorCode]bool{
	10005: true, // no suitable peers for placement (not all peers known yet)
	10202: true, // cluster member change in progress
}

// Permanent reports whether err is a configuration error that no retry
// fixes: a JetStream API error of status 400 (a bad or incompatible
// configuration: a stream of that name with other settings, overlapping
// subjects, a change that cannot be made), or one of the configuration
// errors the server reports with another status. Timeouts, missing
// responders, lost connections, 5xx and "not found" are transient, and so
// is any other error.
func Permanent(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		if transientCodes[apiErr.ErrorCode] {
			return false
		}
		return apiErr.Code == 400 || permanentCodes[apiErr.ErrorCode]
	}
	return false
}
