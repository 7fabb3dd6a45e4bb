package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/enrollgate/enrollgate/internal/apierror"
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

// The errors the HTTP layer itself decides: a bad body, a missing token, an
// unknown route. apierror.Of answers them as they are.

func badRequest(format string, args ...any) error {
	return &apierror.Error{Class: apierror.BadRequest, Code: apierror.CodeInvalidRequest, Detail: fmt.Sprintf(format, args...)}
}

var (
	errUnauthenticated = &apierror.Error{Class: apierror.Unauthorized, Code: apierror.CodeUnauthorized,
		Detail: "a valid bearer token is required"}
	// errNotFound is also the answer for a site outside the token's scope, so
	// that site IDs cannot be probed.
	errNotFound         = &apierror.Error{Class: apierror.NotFound, Code: apierror.CodeNotFound, Detail: "not found"}
	errMethodNotAllowed = &apierror.Error{Class: apierror.MethodNotAllowed, Code: apierror.CodeMethodNotAllowed,
		Detail: "method not allowed on this resource; see the Allow header"}
	errUnsupportedMedia = &apierror.Error{Class: apierror.UnsupportedMedia, Code: apierror.CodeUnsupportedMedia,
		Detail: "the request body must be application/json"}
)

var errNotTokenAdmin = &apierror.Error{Class: apierror.Forbidden, Code: apierror.CodeForbidden,
	Detail: `managing API tokens needs an admin token for all sites ("*")`}

func forbidden(perm string) error {
	return &apierror.Error{Class: apierror.Forbidden, Code: apierror.CodeForbidden,
		Detail: fmt.Sprintf("this token's role does not allow %s", perm)}
}

// problemFor maps an error to its problem document through apierror's one
// table; the work that failed ran under ctx. Its second result says whether
// the error is the service's fault and must be logged.
func problemFor(ctx context.Context, err error) (p Problem, serverFault bool) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		err = &apierror.Error{Class: apierror.TooLarge, Code: apierror.CodeBodyTooLarge,
			Detail: fmt.Sprintf("the request body exceeds %d bytes", tooBig.Limit)}
	}
	ap := apierror.Of(ctx, err)
	p = Problem{Type: problemTypePrefix + ap.Code, Title: http.StatusText(ap.Class.HTTPStatus()),
		Status: ap.Class.HTTPStatus(), Detail: ap.Detail, Code: ap.Code}
	return p, ap.Fault
}

// writeProblem answers with the problem for err, and logs it once when it is
// the service's fault.
func (a *API) writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	p, serverFault := problemFor(r.Context(), err)
	info := infoFrom(r.Context())
	if info != nil {
		p.RequestID = info.id
	}
	if serverFault {
		ev := a.log.Error()
		if p.Status < http.StatusInternalServerError || p.Code == apierror.CodeBusy || p.Code == apierror.CodeTimeout {
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
		if p.Code == apierror.CodeBusy || p.Code == apierror.CodeNotCaughtUp || p.Code == apierror.CodeUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		if p.Code == apierror.CodeUpgradeRequired || p.Code == apierror.CodeKeyUnavailable {
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
