package httpapi

import (
	"net/http"

	"github.com/enrollgate/enrollgate/internal/auth"
)

// WhoamiResponse answers GET /v1/whoami: who the token stands for, so that a
// client (the console) shows only what the role allows. It never holds the
// token.
type WhoamiResponse struct {
	ID    string    `json:"id"`
	Role  auth.Role `json:"role"`
	Sites []string  `json:"sites"`
}

// whoami is GET /v1/whoami, for a token of any role.
func (a *API) whoami(w http.ResponseWriter, r *http.Request, _ *call) error {
	p, ok := a.authenticate(r)
	if !ok {
		return errUnauthenticated
	}
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusOK, WhoamiResponse{ID: p.ID, Role: p.Role, Sites: p.Sites})
}
