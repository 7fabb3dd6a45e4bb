package apierror

import (
	"context"
	"errors"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/auth"
)

// Class is what kind of failure an error is, whatever the transport.
type Class int

// The classes. Unavailable is retryable: the service or NATS did not answer
// (a NATS timeout, no responders, a lost connection), or this replica cannot
// answer for the site yet (a key it lacks, an event of a newer version).
const (
	Internal Class = iota // the zero Class: an error nobody classified is the service's
	BadRequest
	Unauthorized
	Forbidden
	NotFound
	MethodNotAllowed
	Conflict
	TooLarge
	UnsupportedMedia
	Throttled
	Unavailable
	Timeout // the caller's own deadline passed
)

// transports is the one table from a class to each transport's code: the
// HTTP status, and the micro error code of the NATS endpoint. A micro code
// is the HTTP status, except that a timeout is 503 there: the requester's
// own NATS timeout is the deadline that matters to it, and 503 says retry.
var transports = [...]struct {
	http  int
	micro string
}{
	Internal:         {http.StatusInternalServerError, "500"},
	BadRequest:       {http.StatusBadRequest, "400"},
	Unauthorized:     {http.StatusUnauthorized, "401"},
	Forbidden:        {http.StatusForbidden, "403"},
	NotFound:         {http.StatusNotFound, "404"},
	MethodNotAllowed: {http.StatusMethodNotAllowed, "405"},
	Conflict:         {http.StatusConflict, "409"},
	TooLarge:         {http.StatusRequestEntityTooLarge, "413"},
	UnsupportedMedia: {http.StatusUnsupportedMediaType, "415"},
	Throttled:        {http.StatusTooManyRequests, "429"},
	Unavailable:      {http.StatusServiceUnavailable, "503"},
	Timeout:          {http.StatusGatewayTimeout, "503"},
}

// HTTPStatus is the HTTP status of the class.
func (c Class) HTTPStatus() int { return transports[c.known()].http }

// MicroCode is the micro error code of the class on the NATS endpoint.
func (c Class) MicroCode() string { return transports[c.known()].micro }

func (c Class) known() Class {
	if c < 0 || int(c) >= len(transports) {
		return Internal
	}
	return c
}

// Codes: the stable `code` member of HTTP problem documents, and the prefix
// of a micro error's description. WARNING: clients match on them; never
// rename one.
const (
	CodeInvalidRequest   = "invalid_request"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeNotActive        = "not_active"
	CodeNotGenerated     = "not_generated"
	CodeBootstrapToken   = "bootstrap_token"
	CodeBodyTooLarge     = "body_too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeBusy             = "busy"
	CodeTimeout          = "timeout"
	CodeUnavailable      = "unavailable"
	CodeUpgradeRequired  = "upgrade_required"
	CodeKeyUnavailable   = "key_unavailable"
	CodeNotReady         = "not_ready"
	CodeNotCaughtUp      = "not_caught_up"
	CodeInternal         = "internal"
)

// Error is a failure whose class, code and detail the layer that found it
// decided (a malformed body, a missing token, an unknown route, a read model
// behind): Of answers it as it is, and does not log it.
type Error struct {
	Class  Class
	Code   string
	Detail string
}

func (e *Error) Error() string { return e.Code + ": " + e.Detail }

// Problem is what a transport answers for an error.
type Problem struct {
	Class Class
	Code  string
	// Detail is safe to show the caller: it never holds a secret, and for
	// the service's own faults it is generic, since the error may describe
	// internals.
	Detail string
	// Fault: the service's fault, which the edge logs once.
	Fault bool
}

// detailOwn takes the error's own message as the detail: these errors are
// written to be shown (they name fields, never values).
const detailOwn = ""

const unavailableDetail = "the event log did not answer; the change may or may not have been made: check before retrying"

// rules are the errors of the layers below the transports, in the order
// they are tried: the first whose sentinel the error wraps decides.
var rules = []struct {
	is     []error
	class  Class
	code   string
	detail string
	fault  bool
}{
	{[]error{domain.ErrInvalid, domain.ErrInvalidPolicy, auth.ErrInvalid}, BadRequest, CodeInvalidRequest, detailOwn, false},
	{[]error{domain.ErrNotActive}, Conflict, CodeNotActive, domain.ErrNotActive.Error(), false},
	{[]error{domain.ErrNotGenerated}, Conflict, CodeNotGenerated, domain.ErrNotGenerated.Error(), false},
	{[]error{auth.ErrNotFound}, NotFound, CodeNotFound, "no such token", false},
	{[]error{auth.ErrBootstrap}, Conflict, CodeBootstrapToken,
		"a bootstrap token (--admin-token, --enrollment-token) is configured on its replica and cannot be revoked here: remove the flag and restart that replica", false},
	{[]error{auth.ErrUnavailable}, Unavailable, CodeUnavailable,
		"the token store did not answer; the change may or may not have been made: check GET /v1/tokens before retrying", true},
	{[]error{handlers.ErrBusy}, Unavailable, CodeBusy, "the site is busy with concurrent changes; retry shortly", true},
	{[]error{handlers.ErrUpgradeRequired}, Unavailable, CodeUpgradeRequired,
		"the site's event log holds an event written by a newer version of the service; this replica must be upgraded", true},
	{[]error{handlers.ErrKeyUnavailable}, Unavailable, CodeKeyUnavailable,
		"the site's passcode was made with a key this replica does not hold; its keys file must be the other replicas'", true},
	{[]error{handlers.ErrUnavailable}, Unavailable, CodeUnavailable, unavailableDetail, true},
	// NATS did not answer, or the connection is lost (a write's unknown
	// outcome arrives as handlers.ErrUnavailable, above).
	{[]error{nats.ErrTimeout, nats.ErrNoResponders, jetstream.ErrNoStreamResponse, nats.ErrConnectionClosed,
		nats.ErrConnectionReconnecting, nats.ErrDisconnected, nats.ErrConnectionDraining}, Unavailable, CodeUnavailable, unavailableDetail, true},
}

// Of classifies err, the failure of work done under ctx: the one table from
// the errors of every layer to their class, code and detail. A deadline is a
// Timeout when it is ctx's own (the caller's budget ran out), and
// Unavailable when it is one the service set below it (NATS did not answer
// in time).
func Of(ctx context.Context, err error) Problem {
	var e *Error
	if errors.As(err, &e) {
		return Problem{Class: e.Class, Code: e.Code, Detail: e.Detail}
	}
	for _, r := range rules {
		for _, s := range r.is {
			if errors.Is(err, s) {
				p := Problem{Class: r.class, Code: r.code, Detail: r.detail, Fault: r.fault}
				if p.Detail == detailOwn {
					p.Detail = err.Error()
				}
				return p
			}
		}
	}
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		// The caller went away: nobody reads the answer, nothing to log.
		return Problem{Class: Unavailable, Code: CodeUnavailable, Detail: "the request was cancelled"}
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return Problem{Class: Timeout, Code: CodeTimeout, Detail: "the request took too long", Fault: true}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return Problem{Class: Unavailable, Code: CodeUnavailable, Detail: unavailableDetail, Fault: true}
	}
	return Problem{Class: Internal, Code: CodeInternal, Detail: "internal error; the service's log has the details", Fault: true}
}
