package handlers

import (
	"context"
	"fmt"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// RevealPasscode reads the plain text of a site's current passcode, and
// records that the administrator did.
type RevealPasscode struct {
	Site  events.Site
	Actor events.Actor
}

// RevealResult is the plain text and the generation it belongs to.
type RevealResult struct {
	Passcode   Secret
	PasscodeID string
	State      domain.State
	Seq        uint64
}

// RevealPasscode runs the command. The reveal is recorded before the plain
// text is returned, so that no reveal goes unaudited.
func (s *Service) RevealPasscode(ctx context.Context, cmd RevealPasscode) (RevealResult, error) {
	var gen domain.Generation
	out, err := s.execute(ctx, cmd.Site, cmd.Actor, func(p *domain.Passcode, _ time.Time) (events.Payload, error) {
		gen, _ = p.Current()
		return p.Reveal()
	})
	if err != nil {
		return RevealResult{}, fmt.Errorf("reveal passcode: %w", err)
	}
	secret, err := s.keeper.Open(gen.SealKeyID, gen.Sealed)
	if err != nil {
		return RevealResult{}, fmt.Errorf("reveal passcode of site %s: open sealed copy: %w", cmd.Site, err)
	}
	return RevealResult{Passcode: secret, PasscodeID: gen.PasscodeID, State: out.State, Seq: out.Seq}, nil
}
