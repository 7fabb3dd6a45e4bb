package httpapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

// openAPIDocument is the OpenAPI 3.1 document of every route in routes(),
// written by hand; TestOpenAPIMatchesRoutes fails when the two disagree.
//
//go:embed openapi.json
var openAPIDocument []byte

// openAPIETag changes with the document, so that clients can revalidate a
// cached copy after an upgrade.
var openAPIETag = func() string {
	sum := sha256.Sum256(openAPIDocument)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}()

// openAPI is GET /openapi.json: public, like /healthz, since it describes
// the API and holds nothing about sites or tokens.
func (a *API) openAPI(w http.ResponseWriter, r *http.Request, _ *call) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("ETag", openAPIETag)
	// ServeContent answers If-None-Match with 304 and HEAD without a body.
	http.ServeContent(w, r, "openapi.json", time.Time{}, bytes.NewReader(openAPIDocument))
	return nil
}
