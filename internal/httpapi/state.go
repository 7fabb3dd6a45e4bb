package httpapi

import (
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// StateDoc is the passcode state document of a site, as the HTTP API shows it
// in write responses and in GET /v1/sites/{site}/passcode. Empty times and
// strings are left out.
type StateDoc struct {
	Site              string          `json:"site"`
	Status            domain.Status   `json:"status"`
	PasscodeID        string          `json:"passcode_id,omitempty"`
	GeneratedAt       time.Time       `json:"generated_at,omitzero"`
	GeneratedBy       string          `json:"generated_by,omitempty"`
	FailedAttempts    int             `json:"failed_attempts"`
	MaxFailedAttempts int             `json:"max_failed_attempts"`
	FailureWindow     events.Duration `json:"failure_window"`
	// Locked is set once the failures reached the threshold, possibly before
	// the lockout saga has disabled the passcode.
	Locked         bool      `json:"locked,omitempty"`
	LastFailedAt   time.Time `json:"last_failed_at,omitzero"`
	DisabledAt     time.Time `json:"disabled_at,omitzero"`
	DisabledBy     string    `json:"disabled_by,omitempty"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
	Seq            uint64    `json:"seq"`
}

// StateFromDomain converts a domain state to its document, times in UTC.
func StateFromDomain(s domain.State) StateDoc {
	return StateDoc{
		Site:              s.Site,
		Status:            s.Status,
		PasscodeID:        s.PasscodeID,
		GeneratedAt:       utc(s.GeneratedAt),
		GeneratedBy:       s.GeneratedBy,
		FailedAttempts:    s.FailedAttempts,
		MaxFailedAttempts: s.MaxFailedAttempts,
		FailureWindow:     events.Duration(s.FailureWindow),
		Locked:            s.Locked,
		LastFailedAt:      utc(s.LastFailedAt),
		DisabledAt:        utc(s.DisabledAt),
		DisabledBy:        s.DisabledBy,
		DisabledReason:    string(s.DisabledReason),
		Seq:               s.Seq,
	}
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}
