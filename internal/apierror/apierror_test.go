package apierror_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/apierror"
	"github.com/enrollgate/enrollgate/internal/auth"
)

// TestTransports: every class answers the HTTP status DESIGN.md and
// openapi.json document, and the micro code of the NATS endpoint (400 for a
// malformed request, 503 for whatever is worth retrying, 500 otherwise).
func TestTransports(t *testing.T) {
	for _, c := range []struct {
		class apierror.Class
		http  int
		micro string
	}{
		{apierror.BadRequest, 400, "400"},
		{apierror.Unauthorized, 401, "401"},
		{apierror.Forbidden, 403, "403"},
		{apierror.NotFound, 404, "404"},
		{apierror.MethodNotAllowed, 405, "405"},
		{apierror.Conflict, 409, "409"},
		{apierror.TooLarge, 413, "413"},
		{apierror.UnsupportedMedia, 415, "415"},
		{apierror.Throttled, 429, "429"},
		{apierror.Unavailable, 503, "503"},
		{apierror.Timeout, 504, "503"},
		{apierror.Internal, 500, "500"},
		{apierror.Class(-1), 500, "500"},
		{apierror.Class(1000), 500, "500"},
	} {
		if got := c.class.HTTPStatus(); got != c.http {
			t.Errorf("class %d: HTTP %d, want %d", c.class, got, c.http)
		}
		if got := c.class.MicroCode(); got != c.micro {
			t.Errorf("class %d: micro code %q, want %q", c.class, got, c.micro)
		}
	}
}

// TestOf: the errors of every layer, wrapped as the layers wrap them, get
// their class and code; a NATS timeout, no responders or a lost connection
// is Unavailable (retryable), as is a deadline the service set below the
// caller's; the caller's own deadline is a Timeout.
func TestOf(t *testing.T) {
	live := context.Background()
	expired, cancel := context.WithTimeout(live, 0)
	defer cancel()
	cancelled, stop := context.WithCancel(live)
	stop()
	wrap := func(err error) error { return fmt.Errorf("verify passcode: load site acme: %w", err) }
	for _, c := range []struct {
		name  string
		ctx   context.Context
		err   error
		class apierror.Class
		code  string
		fault bool
	}{
		{"invalid", live, wrap(domain.ErrInvalid), apierror.BadRequest, apierror.CodeInvalidRequest, false},
		{"invalid policy", live, wrap(domain.ErrInvalidPolicy), apierror.BadRequest, apierror.CodeInvalidRequest, false},
		{"invalid principal", live, wrap(auth.ErrInvalid), apierror.BadRequest, apierror.CodeInvalidRequest, false},
		{"not active", live, wrap(domain.ErrNotActive), apierror.Conflict, apierror.CodeNotActive, false},
		{"not generated", live, wrap(domain.ErrNotGenerated), apierror.Conflict, apierror.CodeNotGenerated, false},
		{"no such token", live, wrap(auth.ErrNotFound), apierror.NotFound, apierror.CodeNotFound, false},
		{"bootstrap", live, wrap(auth.ErrBootstrap), apierror.Conflict, apierror.CodeBootstrapToken, false},
		{"token store", live, wrap(auth.ErrUnavailable), apierror.Unavailable, apierror.CodeUnavailable, true},
		{"busy", live, wrap(handlers.ErrBusy), apierror.Unavailable, apierror.CodeBusy, true},
		{"upgrade", live, wrap(handlers.ErrUpgradeRequired), apierror.Unavailable, apierror.CodeUpgradeRequired, true},
		{"key", live, wrap(handlers.ErrKeyUnavailable), apierror.Unavailable, apierror.CodeKeyUnavailable, true},
		{"outcome unknown", live, wrap(handlers.ErrUnavailable), apierror.Unavailable, apierror.CodeUnavailable, true},
		{"outcome unknown past the deadline", expired, fmt.Errorf("%w: %w", handlers.ErrUnavailable, context.DeadlineExceeded),
			apierror.Unavailable, apierror.CodeUnavailable, true},
		{"NATS timeout", live, wrap(nats.ErrTimeout), apierror.Unavailable, apierror.CodeUnavailable, true},
		{"no responders", live, wrap(nats.ErrNoResponders), apierror.Unavailable, apierror.CodeUnavailable, true},
		{"no stream response", live, wrap(jetstream.ErrNoStreamResponse), apierror.Unavailable, apierror.CodeUnavailable, true},
		{"connection closed", live, wrap(nats.ErrConnectionClosed), apierror.Unavailable, apierror.CodeUnavailable, true},
		{"reconnecting", live, wrap(nats.ErrConnectionReconnecting), apierror.Unavailable, apierror.CodeUnavailable, true},
		{"disconnected", live, wrap(nats.ErrDisconnected), apierror.Unavailable, apierror.CodeUnavailable, true},
		{"draining", live, wrap(nats.ErrConnectionDraining), apierror.Unavailable, apierror.CodeUnavailable, true},
		{"inner deadline", live, wrap(context.DeadlineExceeded), apierror.Unavailable, apierror.CodeUnavailable, true},
		{"inner cancel", live, wrap(context.Canceled), apierror.Unavailable, apierror.CodeUnavailable, true},
		{"caller's deadline", expired, wrap(context.DeadlineExceeded), apierror.Timeout, apierror.CodeTimeout, true},
		{"caller gone", cancelled, wrap(context.Canceled), apierror.Unavailable, apierror.CodeUnavailable, false},
		{"decided", live, wrap(&apierror.Error{Class: apierror.Forbidden, Code: apierror.CodeForbidden, Detail: "no"}),
			apierror.Forbidden, apierror.CodeForbidden, false},
		{"anything else", live, errors.New("disk on fire"), apierror.Internal, apierror.CodeInternal, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := apierror.Of(c.ctx, c.err)
			if p.Class != c.class || p.Code != c.code || p.Fault != c.fault || p.Detail == "" {
				t.Fatalf("Of(%v) = %+v, want class %d, code %s, fault %v", c.err, p, c.class, c.code, c.fault)
			}
			if c.fault && p.Detail == c.err.Error() {
				t.Fatalf("a fault of the service shows its error: %q", p.Detail)
			}
		})
	}
}
