package httpapi

import (
	"context"
	"net/http"

	"github.com/enrollgate/enrollgate/internal/apierror"
)

type healthResponse struct {
	Status string `json:"status"`
}

// healthz answers while the process serves: liveness only.
func (a *API) healthz(w http.ResponseWriter, _ *http.Request, _ *call) error {
	return writeJSON(w, http.StatusOK, healthResponse{Status: "ok"})
}

// readyz runs the readiness check, bounded by ReadyTimeout, and says why the
// service is not ready. Not logged: orchestrators poll it.
func (a *API) readyz(w http.ResponseWriter, r *http.Request, _ *call) error {
	if a.deps.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.ReadyTimeout)
		defer cancel()
		if err := a.deps.Ready(ctx); err != nil {
			return &apierror.Error{Class: apierror.Unavailable, Code: apierror.CodeNotReady, Detail: err.Error()}
		}
	}
	return writeJSON(w, http.StatusOK, healthResponse{Status: "ready"})
}
