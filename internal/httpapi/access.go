package httpapi

import (
	"net/http"
	"strings"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/auth"
)

// call is what a handler knows of its request beyond the request itself.
type call struct {
	// Principal is the authenticated caller; zero on public routes.
	Principal auth.Principal
	// Site is the {site} path value, parsed by onSite; empty on routes without one.
	Site events.Site
}

// actor is the identity recorded in the events a write causes: the token's,
// never a field of the request.
func (c *call) actor() events.Actor {
	return events.Actor{Kind: events.ActorAdmin, ID: c.Principal.ID}
}

// handlerFunc serves one route. A returned error is answered by writeProblem
// (after nothing was written); the handler writes only successes.
type handlerFunc func(w http.ResponseWriter, r *http.Request, c *call) error

func (a *API) serve(w http.ResponseWriter, r *http.Request, h handlerFunc, c *call) {
	if err := h(w, r, c); err != nil {
		a.writeProblem(w, r, err)
	}
}

// public serves a route that needs no token.
func (a *API) public(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.serve(w, r, h, &call{})
	})
}

// authenticated serves a route without {site} for principals whose role
// grants perm. The handler filters what it returns by Principal.CanSee.
func (a *API) authenticated(perm auth.Permission, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := a.authenticate(r)
		if !ok {
			a.writeProblem(w, r, errUnauthenticated)
			return
		}
		if !p.Role.Grants(perm) {
			a.writeProblem(w, r, forbidden(string(perm)))
			return
		}
		a.serve(w, r, h, &call{Principal: p})
	})
}

// tokenAdmin serves a token route for admins of every site only: a token
// such an admin makes may reach any site. The routes concern no site, so
// there is nothing to hide: another token gets 403, like a role without the
// permission on a route without {site}.
func (a *API) tokenAdmin(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := a.authenticate(r)
		if !ok {
			a.writeProblem(w, r, errUnauthenticated)
			return
		}
		if !p.ManagesTokens() {
			a.writeProblem(w, r, errNotTokenAdmin)
			return
		}
		a.serve(w, r, h, &call{Principal: p})
	})
}

// onSite serves a {site} route for principals that see the site and whose
// role grants perm. The order matters: no token says nothing about the site
// (401); a malformed site ID is a client error (400); a site outside the
// token's scope is not found (404), so that site IDs cannot be probed; only a
// visible site can be forbidden (403).
func (a *API) onSite(perm auth.Permission, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := a.authenticate(r)
		if !ok {
			a.writeProblem(w, r, errUnauthenticated)
			return
		}
		site, err := events.ParseSite(r.PathValue("site"))
		if err != nil {
			a.writeProblem(w, r, badRequest("path parameter site: %v", err))
			return
		}
		if !p.CanSee(site) {
			a.writeProblem(w, r, errNotFound)
			return
		}
		if !p.Role.Grants(perm) {
			a.writeProblem(w, r, forbidden(string(perm)))
			return
		}
		a.serve(w, r, h, &call{Principal: p, Site: site})
	})
}

// authenticate resolves the bearer token of the request and records the
// principal for the access log.
func (a *API) authenticate(r *http.Request) (auth.Principal, bool) {
	scheme, token, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return auth.Principal{}, false
	}
	p, ok := a.deps.Auth.Authenticate(strings.TrimSpace(token))
	if !ok {
		return auth.Principal{}, false
	}
	if info := infoFrom(r.Context()); info != nil {
		info.principal = p.ID
	}
	return p, true
}
