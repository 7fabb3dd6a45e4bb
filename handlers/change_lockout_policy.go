package handlers

import (
	"context"
	"fmt"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// ChangeLockoutPolicy sets a site's own lockout threshold and failure window.
type ChangeLockoutPolicy struct {
	Site              events.Site
	Actor             events.Actor
	MaxFailedAttempts int
	FailureWindow     time.Duration
	// Mode is enforce or monitor; empty is enforce.
	Mode events.LockoutMode
}

// ChangeLockoutPolicyResult is the state after the command.
type ChangeLockoutPolicyResult struct {
	State domain.State
	Seq   uint64
}

// ChangeLockoutPolicy runs the command.
func (s *Service) ChangeLockoutPolicy(ctx context.Context, cmd ChangeLockoutPolicy) (ChangeLockoutPolicyResult, error) {
	out, err := s.execute(ctx, cmd.Site, cmd.Actor, func(p *domain.Passcode, now time.Time) (events.Payload, error) {
		return p.ChangePolicy(now, cmd.MaxFailedAttempts, cmd.FailureWindow, cmd.Mode)
	})
	if err != nil {
		return ChangeLockoutPolicyResult{}, fmt.Errorf("change lockout policy: %w", err)
	}
	return ChangeLockoutPolicyResult{State: out.State, Seq: out.Seq}, nil
}
