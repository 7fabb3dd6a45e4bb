package projections

import (
	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// StateDocFromDomain returns the state document of a domain state, as a write
// answers it right after its command: the same type and JSON shape as the
// read model's documents, so that a client sees one document whichever route
// it reads. Times are in UTC; zero times are left out. domain.State does not
// list throttled sources, so the document has none.
func StateDocFromDomain(s domain.State) StateDoc {
	if s.Mode == "" {
		s.Mode = events.ModeEnforce
	}
	return StateDoc{
		Site:              s.Site,
		Status:            s.Status,
		PasscodeID:        s.PasscodeID,
		GeneratedAt:       utcPtr(s.GeneratedAt),
		GeneratedBy:       s.GeneratedBy,
		FailedAttempts:    s.FailedAttempts,
		MaxFailedAttempts: s.MaxFailedAttempts,
		FailureWindow:     events.Duration(s.FailureWindow),
		Locked:            s.Locked,
		LastFailedAt:      utcPtr(s.LastFailedAt),
		DisabledAt:        utcPtr(s.DisabledAt),
		DisabledBy:        s.DisabledBy,
		DisabledReason:    s.DisabledReason,
		Seq:               s.Seq,
		Mode:              s.Mode,
		CheckCharacter:    s.CheckCharacter,
		ExpiresAt:         utcPtr(s.ExpiresAt),
		MaxEnrollments:    s.MaxEnrollments,
		Enrollments:       s.Enrollments,
		LastEnrolledAt:    utcPtr(s.LastEnrolledAt),
		LastFailedSource:  s.LastFailedSource,
		Retiring:          retiringDoc(s.Retiring),
	}
}

func retiringDoc(r *domain.Retiring) *RetiringDoc {
	if r == nil {
		return nil
	}
	return &RetiringDoc{PasscodeID: r.PasscodeID, Until: r.Until.UTC()}
}
