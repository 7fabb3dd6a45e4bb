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
//     problemFor, the one mapping from error to status and code, turns into
//     the response;
//   - middleware.go wraps every request: request ID, timeout, panic recovery
//     and an access log that records method, path, status, duration, request
//     ID and principal, never a body, a header value or a passcode.
//
// The plain-text passcode leaves the service only in the generate and reveal
// responses (handlers.Secret.Plain is called there and nowhere else), with
// Cache-Control: no-store. Malformed requests are refused before any command
// runs, so that they never count as enrollment attempts (invariant 6).
package httpapi
