package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/projections"
)

// emptyRequest is the body of reveal and disable: nothing, or {}.
type emptyRequest struct{}

// GenerateResponse answers POST /v1/sites/{site}/passcode.
type GenerateResponse struct {
	Site     string               `json:"site"`
	Passcode string               `json:"passcode"`
	State    projections.StateDoc `json:"state"`
	Seq      uint64               `json:"seq"`
}

// RevealResponse answers POST /v1/sites/{site}/passcode/reveal.
type RevealResponse struct {
	Site       string `json:"site"`
	Passcode   string `json:"passcode"`
	PasscodeID string `json:"passcode_id"`
	Seq        uint64 `json:"seq"`
}

// WriteResponse answers the writes that return the state: disable and the
// lockout policy.
type WriteResponse struct {
	Site  string               `json:"site"`
	State projections.StateDoc `json:"state"`
	Seq   uint64               `json:"seq"`
}

// LockoutPolicyRequest is the body of PUT /v1/sites/{site}/lockout-policy.
// The threshold and the window are required: a PUT replaces the policy, so
// an absent mode is enforce.
type LockoutPolicyRequest struct {
	MaxFailedAttempts *int    `json:"max_failed_attempts"`
	FailureWindow     *string `json:"failure_window"`
	Mode              *string `json:"mode"`
}

// GenerateRequest is the optional body of POST /v1/sites/{site}/passcode:
// every field may be left out (no expiry, no cap, no grace).
type GenerateRequest struct {
	ExpiresIn      *string `json:"expires_in"`
	MaxEnrollments *int    `json:"max_enrollments"`
	Grace          *string `json:"grace"`
}

// lifecycle checks the request and returns what it asks for, with every
// problem named at once.
func (g GenerateRequest) lifecycle() (domain.Lifecycle, error) {
	var l domain.Lifecycle
	var problems []string
	duration := func(name string, v *string, dst *time.Duration) {
		if v == nil {
			return
		}
		d, err := time.ParseDuration(*v)
		if err != nil {
			problems = append(problems, "field "+name+" must be a duration such as \"720h\" or \"30m\"")
			return
		}
		*dst = d
	}
	duration("expires_in", g.ExpiresIn, &l.ExpiresIn)
	duration("grace", g.Grace, &l.Grace)
	if g.MaxEnrollments != nil {
		l.MaxEnrollments = *g.MaxEnrollments
	}
	if len(problems) > 0 {
		return l, badRequest("%s", strings.Join(problems, "; "))
	}
	if err := l.Validate(); err != nil {
		return l, err
	}
	return l, nil
}

func (a *API) generatePasscode(w http.ResponseWriter, r *http.Request, c *call) error {
	var req GenerateRequest
	if err := a.decodeBody(w, r, &req, true); err != nil {
		return err
	}
	life, err := req.lifecycle()
	if err != nil {
		return err
	}
	res, err := a.deps.Commands.GeneratePasscode(r.Context(), handlers.GeneratePasscode{Site: c.Site, Actor: c.actor(), Lifecycle: life})
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", "/v1/sites/"+string(c.Site)+"/passcode")
	setSeq(w, res.Seq)
	// One of the two places the plain text leaves the service (invariant 5).
	return writeJSON(w, http.StatusCreated, GenerateResponse{
		Site: string(c.Site), Passcode: res.Passcode.Plain(), State: projections.StateDocFromDomain(res.State), Seq: res.Seq,
	})
}

func (a *API) revealPasscode(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := a.decodeBody(w, r, &emptyRequest{}, true); err != nil {
		return err
	}
	res, err := a.deps.Commands.RevealPasscode(r.Context(), handlers.RevealPasscode{Site: c.Site, Actor: c.actor()})
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	setSeq(w, res.Seq)
	// The other place the plain text leaves the service (invariant 5).
	return writeJSON(w, http.StatusOK, RevealResponse{
		Site: string(c.Site), Passcode: res.Passcode.Plain(), PasscodeID: res.PasscodeID, Seq: res.Seq,
	})
}

func (a *API) disablePasscode(w http.ResponseWriter, r *http.Request, c *call) error {
	if err := a.decodeBody(w, r, &emptyRequest{}, true); err != nil {
		return err
	}
	res, err := a.deps.Commands.DisablePasscode(r.Context(), handlers.DisablePasscode{
		Site: c.Site, Actor: c.actor(), Reason: events.DisableManual,
	})
	if err != nil {
		return err
	}
	setSeq(w, res.Seq)
	return writeJSON(w, http.StatusOK, WriteResponse{Site: string(c.Site), State: projections.StateDocFromDomain(res.State), Seq: res.Seq})
}

func (a *API) changeLockoutPolicy(w http.ResponseWriter, r *http.Request, c *call) error {
	var req LockoutPolicyRequest
	if err := a.decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if req.MaxFailedAttempts == nil || req.FailureWindow == nil {
		return badRequest("max_failed_attempts and failure_window are both required")
	}
	window, err := time.ParseDuration(*req.FailureWindow)
	if err != nil {
		return badRequest("field failure_window must be a duration such as \"1h\" or \"30m\" (\"0\": count every failure since generation)")
	}
	// Checked here as well as in the domain, so that a bad value costs no
	// round trip to the event store.
	if err := domain.ValidateLockout(*req.MaxFailedAttempts, window); err != nil {
		return err
	}
	mode := events.ModeEnforce
	if req.Mode != nil {
		mode = events.LockoutMode(*req.Mode)
		if mode != events.ModeEnforce && mode != events.ModeMonitor {
			return badRequest("field mode must be \"enforce\" or \"monitor\"")
		}
	}
	res, err := a.deps.Commands.ChangeLockoutPolicy(r.Context(), handlers.ChangeLockoutPolicy{
		Site: c.Site, Actor: c.actor(), MaxFailedAttempts: *req.MaxFailedAttempts, FailureWindow: window, Mode: mode,
	})
	if err != nil {
		return err
	}
	setSeq(w, res.Seq)
	return writeJSON(w, http.StatusOK, WriteResponse{Site: string(c.Site), State: projections.StateDocFromDomain(res.State), Seq: res.Seq})
}
