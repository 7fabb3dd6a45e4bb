package handlers

import (
	"context"
	"fmt"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// DisablePasscode disables a generation of a site's passcode: by hand
// (PasscodeID empty: the current one), or for a lockout, aimed at the
// generation that reached the threshold. A disable aimed at an older
// generation, or a lockout of one already disabled, stores nothing.
type DisablePasscode struct {
	Site       events.Site
	Actor      events.Actor
	PasscodeID string
	Reason     events.DisableReason
}

// DisableResult is the state after the command; Seq is 0 when nothing was
// stored.
type DisableResult struct {
	State domain.State
	Seq   uint64
}

// DisablePasscode runs the command.
func (s *Service) DisablePasscode(ctx context.Context, cmd DisablePasscode) (DisableResult, error) {
	out, err := s.execute(ctx, cmd.Site, cmd.Actor, func(p *domain.Passcode, now time.Time) (events.Payload, error) {
		return p.Disable(now, cmd.PasscodeID, cmd.Reason)
	})
	if err != nil {
		return DisableResult{}, fmt.Errorf("disable passcode: %w", err)
	}
	return DisableResult{State: out.State, Seq: out.Seq}, nil
}
