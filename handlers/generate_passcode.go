package handlers

import (
	"context"
	"fmt"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// GeneratePasscode generates a site's passcode, or regenerates it: the new
// generation replaces the old one at once, with a fresh failure count.
type GeneratePasscode struct {
	Site  events.Site
	Actor events.Actor
	// Lifecycle is the new generation's expiry, cap and the replaced one's
	// grace; the zero value has none.
	Lifecycle domain.Lifecycle
}

// GenerateResult is the new passcode in plain text, and the state after it.
type GenerateResult struct {
	Passcode Secret
	State    domain.State
	Seq      uint64
}

// GeneratePasscode runs the command.
func (s *Service) GeneratePasscode(ctx context.Context, cmd GeneratePasscode) (GenerateResult, error) {
	if err := cmd.Lifecycle.Validate(); err != nil {
		return GenerateResult{}, fmt.Errorf("generate passcode: %w", err)
	}
	secret, err := s.keeper.NewPasscode()
	if err != nil {
		return GenerateResult{}, fmt.Errorf("generate passcode: %w", err)
	}
	keyID := s.keeper.MACKeyID()
	hash, err := s.keeper.MAC(keyID, secret)
	if err != nil {
		return GenerateResult{}, fmt.Errorf("hash passcode: %w", err)
	}
	sealed, sealKeyID, err := s.keeper.Seal(secret)
	if err != nil {
		return GenerateResult{}, fmt.Errorf("seal passcode: %w", err)
	}
	// Any passcode that passes the check gets its typos told from guesses;
	// the keeper's passcodes always do.
	gen := domain.NewGeneration{PasscodeID: s.ids.NewID(), Hash: hash, HashKeyID: keyID, Sealed: sealed, SealKeyID: sealKeyID,
		CheckCharacter: domain.ValidCheck(secret.Plain()), Lifecycle: cmd.Lifecycle}
	out, err := s.execute(ctx, cmd.Site, cmd.Actor, func(p *domain.Passcode, now time.Time) (events.Payload, error) {
		return p.Generate(now, gen)
	})
	if err != nil {
		return GenerateResult{}, fmt.Errorf("generate passcode: %w", err)
	}
	return GenerateResult{Passcode: secret, State: out.State, Seq: out.Seq}, nil
}
