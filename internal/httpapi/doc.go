// Package httpapi is enrollgate's HTTP API: JSON over Go 1.22 ServeMux
// patterns, bearer-token authentication (internal/auth), and RFC 9457
// problem documents for every error.
//
// Structure, so that a route is one handler and one line:
//   - routes.go lists every route with its access rule: public, onSite(perm)
//     (authenticate, validate {site}, 404 outside the token's scope, 403 when
//     the role lacks perm) or authenticated(perm) (no site in the path);
//   - a handler has the signature handlerFunc: it gets the authenticated
//     principal and the validated site in a *call and returns an error, which
//     problemFor turns into the response through internal/apierror, the one
//     table from error to class and code (a class's HTTP status is
//     apierror.Class.HTTPStatus);
//   - middleware.go wraps every request: request ID, timeout, panic recovery
//     and an access log that records method, path, status, duration, request
//     ID and principal, never a body, a header value or a passcode.
//
// Reads (queries.go, read.go) answer from a ReadModel (the projector's
// read store): GET /v1/sites, and a site's passcode state, audit trail
// (cursor-paged, newest first) and recent attempts. The state document is
// projections.StateDoc in reads and in write responses alike. Every read
// accepts ?min_seq=N and waits, at most Config.MinSeqTimeout, until the read
// model has applied the stream sequence N that a write answered with
// (read-your-writes); then 503 not_caught_up with Retry-After. Audit cursors
// are opaque: base64url of a version byte and a stream sequence.
//
// The token routes (tokens.go; when Deps.Tokens is set) create, list and
// revoke API tokens for admins of every site only (tokenAdmin: 401 without a
// token, 403 for any other); the token itself is only in the create
// response, with Cache-Control: no-store.
//
// The plain-text passcode leaves the service only in the generate and reveal
// responses (handlers.Secret.Plain is called there and nowhere else), with
// Cache-Control: no-store. Malformed requests are refused before any command
// runs, so that they never count as enrollment attempts (invariant 6).
package httpapi
