package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/auth"
)

// CreateTokenRequest is the body of POST /v1/tokens. Every field is
// required: a token for all sites is asked for with "sites":["*"], never by
// leaving sites out.
type CreateTokenRequest struct {
	Role     *string  `json:"role"`
	Identity *string  `json:"identity"`
	Sites    []string `json:"sites"`
}

// CreateTokenResponse answers POST /v1/tokens: the only response that holds
// the token.
type CreateTokenResponse struct {
	Token     string    `json:"token"`
	TokenID   string    `json:"token_id"`
	Role      auth.Role `json:"role"`
	Identity  string    `json:"identity"`
	Sites     []string  `json:"sites"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// TokenDoc is a token in GET /v1/tokens, without its secret.
type TokenDoc struct {
	TokenID   string     `json:"token_id"`
	Role      auth.Role  `json:"role"`
	Identity  string     `json:"identity"`
	Sites     []string   `json:"sites"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	CreatedBy string     `json:"created_by,omitempty"`
	// LastUsedAt is null for a token never used.
	LastUsedAt *time.Time `json:"last_used_at"`
	// Bootstrap tokens come from this replica's flags; they are not stored
	// and cannot be revoked.
	Bootstrap bool `json:"bootstrap,omitempty"`
}

// TokensResponse answers GET /v1/tokens.
type TokensResponse struct {
	Tokens []TokenDoc `json:"tokens"`
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request, c *call) error {
	var req CreateTokenRequest
	if err := a.decodeBody(w, r, &req, false); err != nil {
		return err
	}
	p, err := req.principal()
	if err != nil {
		return err
	}
	token, info, err := a.deps.Tokens.Create(r.Context(), p, c.Principal.ID)
	if err != nil {
		return err
	}
	a.logTokenChange(r, "API token created", info)
	w.Header().Set("Cache-Control", "no-store")
	// The only place a stored token leaves the service.
	return writeJSON(w, http.StatusCreated, CreateTokenResponse{
		Token: token, TokenID: info.ID, Role: info.Principal.Role, Identity: info.Principal.ID,
		Sites: info.Principal.Sites, CreatedAt: info.CreatedAt, CreatedBy: info.CreatedBy,
	})
}

func (a *API) listTokens(w http.ResponseWriter, r *http.Request, _ *call) error {
	w.Header().Set("Cache-Control", "no-store") // it changes with every token made or used
	list := a.deps.Tokens.List()
	docs := make([]TokenDoc, 0, len(list))
	for _, t := range list {
		d := TokenDoc{TokenID: t.ID, Role: t.Principal.Role, Identity: t.Principal.ID, Sites: t.Principal.Sites,
			CreatedBy: t.CreatedBy, Bootstrap: t.Bootstrap}
		if !t.CreatedAt.IsZero() {
			d.CreatedAt = &t.CreatedAt
		}
		if !t.LastUsedAt.IsZero() {
			d.LastUsedAt = &t.LastUsedAt
		}
		docs = append(docs, d)
	}
	return writeJSON(w, http.StatusOK, TokensResponse{Tokens: docs})
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request, _ *call) error {
	id := r.PathValue("token_id")
	if !auth.ValidTokenID(id) {
		return badRequest("path parameter token_id must be a token ID such as tok_0123456789abcdef")
	}
	if err := a.deps.Tokens.Delete(r.Context(), id); err != nil {
		return err
	}
	a.logTokenChange(r, "API token revoked", auth.TokenInfo{ID: id})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// logTokenChange records who changed which token: never the token.
func (a *API) logTokenChange(r *http.Request, msg string, t auth.TokenInfo) {
	ev := a.log.Info().Str("token_id", t.ID)
	if t.Principal.ID != "" {
		ev = ev.Str("role", string(t.Principal.Role)).Str("identity", t.Principal.ID).Strs("sites", t.Principal.Sites)
	}
	if info := infoFrom(r.Context()); info != nil {
		ev = ev.Str("request_id", info.id).Str("by", info.principal)
	}
	ev.Msg(msg)
}

// principal checks the request, naming the field of each problem and never
// quoting a value, and returns the principal it asks for.
func (req CreateTokenRequest) principal() (auth.Principal, error) {
	var problems []string
	role := auth.Role("")
	switch {
	case req.Role == nil:
		problems = append(problems, "field role is required: admin, auditor or enrollment")
	case !auth.Role(*req.Role).Valid():
		problems = append(problems, "field role must be admin, auditor or enrollment")
	default:
		role = auth.Role(*req.Role)
	}
	identity := ""
	if req.Identity != nil {
		identity = *req.Identity
	}
	switch {
	case identity == "":
		problems = append(problems, "field identity is required: an administrator's email or a service's name")
	case len(identity) > auth.MaxIDLen:
		problems = append(problems, "field identity must be at most 254 bytes")
	case !utf8.ValidString(identity) || strings.ContainsRune(identity, utf8.RuneError):
		problems = append(problems, "field identity must be valid UTF-8")
	case strings.ContainsFunc(identity, events.UnsafeRune):
		problems = append(problems, "field identity must not hold control, line separator or bidi formatting characters")
	}
	problems = append(problems, checkSites(req.Sites)...)
	if len(problems) > 0 {
		return auth.Principal{}, badRequest("%s", strings.Join(problems, "; "))
	}
	return auth.Principal{ID: identity, Role: role, Sites: slices.Clone(req.Sites)}, nil
}

func checkSites(sites []string) []string {
	switch {
	case len(sites) == 0:
		return []string{`field sites is required: a list of site IDs, or ["*"] for all sites`}
	case len(sites) > auth.MaxSites:
		return []string{"field sites may hold at most 256 sites"}
	case slices.Contains(sites, auth.AllSites) && len(sites) > 1:
		return []string{`field sites: "*" (all sites) must be its only entry`}
	case len(sites) == 1 && sites[0] == auth.AllSites:
		return nil
	}
	var problems []string
	seen := make(map[string]bool, len(sites))
	for i, s := range sites {
		_, err := events.ParseSite(s)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("field sites[%d] must be a site ID: 1-63 characters of a-z, 0-9 and '-', not starting with '-'", i))
		case seen[s]:
			problems = append(problems, fmt.Sprintf("field sites[%d] repeats a site", i))
		}
		seen[s] = true
	}
	return problems
}
