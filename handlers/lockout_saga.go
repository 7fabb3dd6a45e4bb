package handlers

import (
	"context"
	"fmt"

	"github.com/enrollgate/enrollgate/events"
)

// LockoutSagaDurable is the name of the saga's durable consumer. WARNING: the
// server keeps the saga's position under this name; renaming it makes a new
// consumer replay the whole stream.
const LockoutSagaDurable = "lockout-saga"

// LockoutSagaEvents are the event types the saga acts on (Handle ignores the
// others), so that its consumer need not decode the rest.
var LockoutSagaEvents = []events.Type{events.TypeEnrollmentAttemptFailed, events.TypeLockoutPolicyChanged}

// LockoutActor is the identity the lockout saga records on the disables it
// issues.
var LockoutActor = events.Actor{Kind: events.ActorSystem, ID: "lockout"}

// LockoutSaga disables a passcode generation once its failures reach the
// threshold. It holds no state and only issues commands: DisablePasscode
// aimed at the generation that was locked, so a late lockout never disables a
// newer generation, and a redelivered event finds the generation disabled
// already and stores nothing.
type LockoutSaga struct {
	commands *Service
}

// NewLockoutSaga returns the saga issuing its commands to svc.
func NewLockoutSaga(svc *Service) *LockoutSaga { return &LockoutSaga{commands: svc} }

// Handle reacts to one stored event. A nil error means the event needs
// nothing more: the consumer may acknowledge it.
func (s *LockoutSaga) Handle(ctx context.Context, rec events.Record) error {
	e := rec.Event
	var passcodeID string
	switch d := e.Data.(type) {
	case events.EnrollmentAttemptFailed:
		if !d.ReachesThreshold() {
			return nil
		}
		passcodeID = d.PasscodeID
	case events.LockoutPolicyChanged:
		// A lower threshold can lock a passcode at once.
		if d.PasscodeID == "" || d.FailedAttempts < d.MaxFailedAttempts {
			return nil
		}
		passcodeID = d.PasscodeID
	default:
		return nil
	}
	_, err := s.commands.DisablePasscode(ctx, DisablePasscode{
		Site: e.Site, Actor: LockoutActor, PasscodeID: passcodeID, Reason: events.DisableLockout,
	})
	if err != nil {
		return fmt.Errorf("lockout saga, event %s: %w", e.ID, err)
	}
	return nil
}
