package httpapi

import (
	"net/http"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/projections"
)

// SitesResponse answers GET /v1/sites: the states of the sites the token may
// see and that have events, sorted by site.
type SitesResponse struct {
	Sites []projections.StateDoc `json:"sites"`
}

// AuditResponse answers GET /v1/sites/{site}/audit: a page of the audit
// trail, newest first. NextCursor is left out on the last page.
type AuditResponse struct {
	Entries    []projections.AuditEntry `json:"entries"`
	NextCursor string                   `json:"next_cursor,omitempty"`
}

// AttemptsResponse answers GET /v1/sites/{site}/attempts: the most recent
// attempts, newest first, with their sources.
type AttemptsResponse struct {
	Attempts []projections.AttemptEntry `json:"attempts"`
}

// listSites is GET /v1/sites. A token scoped to some sites sees only those:
// the others are not listed, as if they did not exist.
func (a *API) listSites(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := a.startRead(w, r, nil); err != nil {
		return err
	}
	// The read model's sites are those of decoded events, parsed there.
	visible := func(site string) bool { return c.Principal.CanSee(events.Site(site)) }
	docs := a.deps.Reads.States(a.deps.Clock.Now(), visible)
	if docs == nil {
		docs = []projections.StateDoc{}
	}
	return writeJSON(w, http.StatusOK, SitesResponse{Sites: docs})
}

// getPasscode is GET /v1/sites/{site}/passcode: the state document, with
// status none for a site where nothing was generated yet.
func (a *API) getPasscode(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := a.startRead(w, r, nil); err != nil {
		return err
	}
	doc, _ := a.deps.Reads.State(string(c.Site), a.deps.Clock.Now())
	return writeJSON(w, http.StatusOK, doc)
}

// getAudit is GET /v1/sites/{site}/audit?limit=&cursor=: newest first; a
// client pages by passing next_cursor back until it is absent.
func (a *API) getAudit(w http.ResponseWriter, r *http.Request, c *call) error {
	var (
		limit  int
		before uint64
	)
	err := a.startRead(w, r, func(q query) (err error) {
		if limit, err = q.limit(); err != nil {
			return err
		}
		before, err = q.cursor()
		return err
	})
	if err != nil {
		return err
	}
	entries, next, err := a.deps.Reads.Audit(string(c.Site), before, limit)
	if err != nil {
		return err
	}
	if entries == nil {
		entries = []projections.AuditEntry{}
	}
	return writeJSON(w, http.StatusOK, AuditResponse{Entries: entries, NextCursor: encodeCursor(next)})
}

// getAttempts is GET /v1/sites/{site}/attempts?outcome=&limit=.
func (a *API) getAttempts(w http.ResponseWriter, r *http.Request, c *call) error {
	var (
		limit   int
		outcome projections.Outcome
	)
	err := a.startRead(w, r, func(q query) (err error) {
		if limit, err = q.limit(); err != nil {
			return err
		}
		outcome, err = q.outcome()
		return err
	})
	if err != nil {
		return err
	}
	attempts, err := a.deps.Reads.Attempts(string(c.Site), outcome, limit)
	if err != nil {
		return err
	}
	if attempts == nil {
		attempts = []projections.AttemptEntry{}
	}
	return writeJSON(w, http.StatusOK, AttemptsResponse{Attempts: attempts})
}
