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
var LockoutSagaEvents = []events.Type{events.TypeEnrollmentAttemptFailed, events.TypeLockoutPolicyChanged,
	events.TypeEnrollmentAttemptSucceeded}

// LockoutActor is the identity the lockout saga records on the disables it
// issues.
var LockoutActor = events.Actor{Kind: events.ActorSystem, ID: "lockout"}

// LockoutSaga disables a passcode generation once its failures reach the
// threshold. It holds no state and only issues commands: DisablePasscode
// aimed at the generation that was locked, so a late lockout never disables a
// newer generation, and a redelivered event finds the generation disabled
// already and stores nothing. In monitor mode it issues SimulateLockout
// instead, and when an enrollment reaches a generation's cap, ExpirePasscode:
// each decided once per generation, so that their alerts are raised once.
type LockoutSaga struct {
	commands *Service
}

// NewLockoutSaga returns the saga issuing its commands to svc.
func NewLockoutSaga(svc *Service) *LockoutSaga { return &LockoutSaga{commands: svc} }

// Handle reacts to one stored event. A nil error means the event needs
// nothing more: the consumer may acknowledge it.
func (s *LockoutSaga) Handle(ctx context.Context, rec events.Record) error {
	e := rec.Event
	var err error
	disable := func(id string) error {
		_, err := s.commands.DisablePasscode(ctx, DisablePasscode{
			Site: e.Site, Actor: LockoutActor, PasscodeID: id, Reason: events.DisableLockout,
		})
		return err
	}
	simulate := func(id string) error {
		_, err := s.commands.SimulateLockout(ctx, SimulateLockout{Site: e.Site, Actor: LockoutActor, PasscodeID: id})
		return err
	}
	switch d := e.Data.(type) {
	case events.EnrollmentAttemptFailed:
		switch {
		case d.ReachesThreshold():
			err = disable(d.PasscodeID)
		case d.ReachesSimulatedThreshold():
			err = simulate(d.PasscodeID)
		}
	case events.LockoutPolicyChanged:
		// A lower threshold, or a switch to enforce, can lock a passcode at once.
		switch {
		case d.Locks():
			err = disable(d.PasscodeID)
		case d.SimulatesLockout():
			err = simulate(d.PasscodeID)
		}
	case events.EnrollmentAttemptSucceeded:
		if d.MaxEnrollments > 0 && d.Enrollments >= d.MaxEnrollments {
			_, err = s.commands.ExpirePasscode(ctx, ExpirePasscode{Site: e.Site, Actor: LockoutActor, PasscodeID: d.PasscodeID})
		}
	}
	if err != nil {
		return fmt.Errorf("lockout saga, event %s: %w", e.ID, err)
	}
	return nil
}
