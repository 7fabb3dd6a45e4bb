package handlers

import (
	"context"
	"fmt"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// ExpirePasscode records, once, that a generation stopped being valid: its
// enrollments reached the cap or its expiry passed. The lockout saga issues
// it when an enrollment reaches the cap; a generation still valid, another
// one than the current, or one recorded already stores nothing.
type ExpirePasscode struct {
	Site       events.Site
	Actor      events.Actor
	PasscodeID string
}

// ExpireResult is the state after the command; Seq is 0 when nothing was
// stored.
type ExpireResult struct {
	State domain.State
	Seq   uint64
}

// ExpirePasscode runs the command.
func (s *Service) ExpirePasscode(ctx context.Context, cmd ExpirePasscode) (ExpireResult, error) {
	out, err := s.execute(ctx, cmd.Site, cmd.Actor, func(p *domain.Passcode, now time.Time) (events.Payload, error) {
		return p.Expire(now, cmd.PasscodeID)
	})
	if err != nil {
		return ExpireResult{}, fmt.Errorf("expire passcode: %w", err)
	}
	return ExpireResult{State: out.State, Seq: out.Seq}, nil
}
