package httpapi

import (
	"net/http"

	"github.com/enrollgate/enrollgate/internal/auth"
)

// metricsRoute serves Deps.Metrics to admin and auditor tokens, or to
// anyone with Config.MetricsPublic.
func (a *API) metricsRoute() http.Handler {
	h := func(w http.ResponseWriter, r *http.Request, _ *call) error {
		if a.deps.Metrics == nil {
			return errNotFound
		}
		a.deps.Metrics.ServeHTTP(w, r)
		return nil
	}
	if a.cfg.MetricsPublic {
		return a.public(h)
	}
	return a.authenticated(auth.PermRead, h)
}
