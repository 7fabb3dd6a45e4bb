package handlers

import (
	"context"
	"fmt"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// SimulateLockout records, once per generation, that its failures reached
// the threshold under a policy in monitor mode. The lockout saga issues it;
// nothing is disabled. A redelivery finds it recorded and stores nothing.
type SimulateLockout struct {
	Site       events.Site
	Actor      events.Actor
	PasscodeID string
}

// SimulateLockoutResult is the state after the command; Seq is 0 when
// nothing was stored.
type SimulateLockoutResult struct {
	State domain.State
	Seq   uint64
}

// SimulateLockout runs the command.
func (s *Service) SimulateLockout(ctx context.Context, cmd SimulateLockout) (SimulateLockoutResult, error) {
	out, err := s.execute(ctx, cmd.Site, cmd.Actor, func(p *domain.Passcode, now time.Time) (events.Payload, error) {
		return p.SimulateLockout(now, cmd.PasscodeID)
	})
	if err != nil {
		return SimulateLockoutResult{}, fmt.Errorf("simulate lockout: %w", err)
	}
	return SimulateLockoutResult{State: out.State, Seq: out.Seq}, nil
}
