package httpapi

import (
	"net/http"

	"github.com/enrollgate/enrollgate/internal/auth"
	"github.com/enrollgate/enrollgate/internal/console"
)

// route is one ServeMux pattern and the handler that serves it, already
// wrapped in its access rule.
type route struct {
	pattern string
	handler http.Handler
}

// routes lists every route of the API: the one place to add one. A handler is
// a handlerFunc in the file of its resource; wrap it in its access rule:
//
//	public(h)                 no token (health checks)
//	onSite(perm, h)           a {site} route: token, valid site, scope, role
//	authenticated(perm, h)    a route without {site}, e.g. GET /v1/sites
//	tokenAdmin(h)             the token routes: an admin of every site
//
// A read route is e.g. {"GET /v1/sites/{site}/audit", a.onSite(auth.PermRead, a.audit)}.
func (a *API) routes() []route {
	rs := []route{
		{"GET /healthz", a.public(a.healthz)},
		{"GET /readyz", a.public(a.readyz)},
		{"GET /metrics", a.metricsRoute()},
		{"GET /openapi.json", a.public(a.openAPI)}, // openapi.go

		// The web console (internal/console): its page and files, and who the
		// signed-in token is.
		{"GET /{$}", console.Handler()},
		{"GET " + console.AssetPrefix + "{file...}", console.Handler()},
		{"GET /v1/whoami", a.public(a.whoami)},

		// Reads (queries.go): every one accepts ?min_seq=N (read.go).
		{"GET /v1/sites", a.authenticated(auth.PermRead, a.listSites)},
		{"GET /v1/sites/{site}/passcode", a.onSite(auth.PermRead, a.getPasscode)},
		{"GET /v1/sites/{site}/audit", a.onSite(auth.PermRead, a.getAudit)},
		{"GET /v1/sites/{site}/attempts", a.onSite(auth.PermRead, a.getAttempts)},

		// Writes (passcode.go).
		{"POST /v1/sites/{site}/passcode", a.onSite(auth.PermWrite, a.generatePasscode)},
		{"POST /v1/sites/{site}/passcode/reveal", a.onSite(auth.PermWrite, a.revealPasscode)},
		{"POST /v1/sites/{site}/passcode/disable", a.onSite(auth.PermWrite, a.disablePasscode)},
		{"PUT /v1/sites/{site}/lockout-policy", a.onSite(auth.PermWrite, a.changeLockoutPolicy)},

		// Enrollment (verify.go).
		{"POST /v1/sites/{site}/enrollments/verify", a.onSite(auth.PermVerify, a.verifyEnrollment)},
	}
	if a.deps.Tokens != nil {
		// API tokens (tokens.go).
		rs = append(rs,
			route{"POST /v1/tokens", a.tokenAdmin(a.createToken)},
			route{"GET /v1/tokens", a.tokenAdmin(a.listTokens)},
			route{"DELETE /v1/tokens/{token_id}", a.tokenAdmin(a.revokeToken)},
		)
	}
	return rs
}
