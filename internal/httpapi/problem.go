package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/handlers"
)

// Problem codes: the stable `code` member of problem documents.
const (
	CodeInvalidRequest   = "invalid_request"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeNotActive        = "not_active"
	CodeNotGenerated     = "not_generated"
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

// problemTypePrefix makes a problem's type URI from its code.
const problemTypePrefix = "urn:enrollgate:problem:"

// Problem is an RFC 9457 problem document with enrollgate's code member.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Code      string `json:"code"`
	RequestID string `json:"request_id,omitempty"`
}

// apiError is an error the HTTP layer itself decides: a bad body, a missing
// token, an unknown route. problemFor maps it like any other error.
type apiError struct {
	status int
	code   string
	detail string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.detail) }

func badRequest(format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, code: CodeInvalidRequest, detail: fmt.Sprintf(format, args...)}
}

var (
	errUnauthenticated = &apiError{status: http.StatusUnauthorized, code: CodeUnauthorized,
		detail: "a valid bearer token is required"}
	// errNotFound is also the answer for a site outside the token's scope, so
	// that site IDs cannot be probed.
	errNotFound         = &apiError{status: http.StatusNotFound, code: CodeNotFound, detail: "not found"}
	errMethodNotAllowed = &apiError{status: http.StatusMethodNotAllowed, code: CodeMethodNotAllowed,
		detail: "method not allowed on this resource; see the Allow header"}
	errUnsupportedMedia = &apiError{status: http.StatusUnsupportedMediaType, code: CodeUnsupportedMedia,
		detail: "the request body must be application/json"}
)

func forbidden(perm string) error {
	return &apiError{status: http.StatusForbidden, code: CodeForbidden,
		detail: fmt.Sprintf("this token's role does not allow %s", perm)}
}

// problemFor is the one mapping from an error to its problem document. Its
// second result says whether the error is the service's fault and must be
// logged; the detail of such an error is generic, since its message may
// describe internals.
func problemFor(err error) (p Problem, serverFault bool) {
	var (
		ae     *apiError
		tooBig *http.MaxBytesError
	)
	switch {
	case errors.As(err, &ae):
		p = Problem{Status: ae.status, Code: ae.code, Detail: ae.detail}
	case errors.As(err, &tooBig):
		p = Problem{Status: http.StatusRequestEntityTooLarge, Code: CodeBodyTooLarge,
			Detail: fmt.Sprintf("the request body exceeds %d bytes", tooBig.Limit)}
	case errors.Is(err, domain.ErrInvalidPolicy), errors.Is(err, domain.ErrInvalid):
		p = Problem{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Detail: err.Error()}
	case errors.Is(err, domain.ErrNotActive):
		p = Problem{Status: http.StatusConflict, Code: CodeNotActive, Detail: domain.ErrNotActive.Error()}
	case errors.Is(err, domain.ErrNotGenerated):
		p = Problem{Status: http.StatusConflict, Code: CodeNotGenerated, Detail: domain.ErrNotGenerated.Error()}
	case errors.Is(err, handlers.ErrBusy):
		p = Problem{Status: http.StatusServiceUnavailable, Code: CodeBusy,
			Detail: "the site is busy with concurrent changes; retry shortly"}
		serverFault = true
	case errors.Is(err, handlers.ErrUpgradeRequired):
		p = Problem{Status: http.StatusServiceUnavailable, Code: CodeUpgradeRequired,
			Detail: "the site's event log holds an event written by a newer version of the service; this replica must be upgraded"}
		serverFault = true
	case errors.Is(err, handlers.ErrKeyUnavailable):
		p = Problem{Status: http.StatusServiceUnavailable, Code: CodeKeyUnavailable,
			Detail: "the site's passcode was made with a key this replica does not hold; its keys file must be the other replicas'"}
		serverFault = true
	case errors.Is(err, handlers.ErrUnavailable):
		p = Problem{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Detail: "the event log did not answer; the change may or may not have been made: check before retrying"}
		serverFault = true
	case errors.Is(err, context.DeadlineExceeded):
		p = Problem{Status: http.StatusGatewayTimeout, Code: CodeTimeout, Detail: "the request took too long"}
		serverFault = true
	case errors.Is(err, context.Canceled):
		p = Problem{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Detail: "the request was cancelled"}
	default:
		p = Problem{Status: http.StatusInternalServerError, Code: CodeInternal,
			Detail: "internal error; quote the request ID when reporting it"}
		serverFault = true
	}
	p.Type = problemTypePrefix + p.Code
	p.Title = http.StatusText(p.Status)
	return p, serverFault
}

// writeProblem answers with the problem for err, and logs it once when it is
// the service's fault.
func (a *API) writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	p, serverFault := problemFor(err)
	info := infoFrom(r.Context())
	if info != nil {
		p.RequestID = info.id
	}
	if serverFault {
		ev := a.log.Error()
		if p.Status < http.StatusInternalServerError || p.Code == CodeBusy || p.Code == CodeTimeout {
			ev = a.log.Warn()
		}
		if info != nil {
			ev = ev.Str("request_id", info.id).Str("principal", info.principal)
		}
		ev.Err(err).Str("method", r.Method).Str("path", logPath(r)).Int("status", p.Status).Msg("request failed")
	}
	switch p.Status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="enrollgate"`)
	case http.StatusServiceUnavailable:
		if p.Code == CodeBusy || p.Code == CodeNotCaughtUp || p.Code == CodeUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		if p.Code == CodeUpgradeRequired || p.Code == CodeKeyUnavailable {
			// Another replica may be upgraded already; this one not soon.
			w.Header().Set("Retry-After", "30")
		}
	}
	b, mErr := json.Marshal(p)
	if mErr != nil { // cannot happen with these field types
		b = []byte(`{"type":"urn:enrollgate:problem:internal","title":"Internal Server Error","status":500,"code":"internal"}`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(b)
}
