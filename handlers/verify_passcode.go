package handlers

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// Bounds of a verify request: anything larger is malformed, not an attempt.
const (
	maxCandidateLen = 128
	maxAttemptIDLen = 128
	maxIPLen        = 64
	maxDeviceIDLen  = 256
	maxPlatformLen  = 32
	maxUserAgentLen = 512
)

// VerifyPasscode checks a passcode a device user typed.
type VerifyPasscode struct {
	Site     events.Site
	Passcode Secret
	// AttemptID is the frontend's idempotency key: a retry with the same ID
	// and the same passcode gets the same verdict and is not counted twice.
	AttemptID string
	Source    events.Source
}

// VerifyResult is the verdict; Seq is the stored event's sequence, 0 when the
// attempt stored nothing (refused before comparison, or a repeat).
type VerifyResult struct {
	domain.Verdict
	Site events.Site
	Seq  uint64
}

// Validate checks the request's shape; a malformed request is not an attempt.
func (c VerifyPasscode) Validate() error {
	var errs []error
	if c.Site == "" {
		errs = append(errs, errors.New("site is required"))
	}
	p := c.Passcode.Plain()
	if p == "" {
		errs = append(errs, errors.New("passcode is required"))
	} else if len(p) > maxCandidateLen || !utf8.ValidString(p) {
		errs = append(errs, fmt.Errorf("passcode must be valid UTF-8 of at most %d bytes", maxCandidateLen))
	}
	for _, f := range []struct {
		name, value string
		limit       int
	}{
		{"attempt_id", c.AttemptID, maxAttemptIDLen},
		{"source.ip", c.Source.IP, maxIPLen},
		{"source.device_id", c.Source.DeviceID, maxDeviceIDLen},
		{"source.platform", c.Source.Platform, maxPlatformLen},
		{"source.user_agent", c.Source.UserAgent, maxUserAgentLen},
	} {
		if len(f.value) > f.limit || !utf8.ValidString(f.value) {
			errs = append(errs, fmt.Errorf("%s must be valid UTF-8 of at most %d bytes", f.name, f.limit))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", domain.ErrInvalid, errors.Join(errs...))
	}
	return nil
}

// VerifyPasscode runs the command. The verdict is returned only after the
// attempt's event is stored.
func (s *Service) VerifyPasscode(ctx context.Context, cmd VerifyPasscode) (VerifyResult, error) {
	if err := cmd.Validate(); err != nil {
		return VerifyResult{}, fmt.Errorf("verify passcode: %w", err)
	}
	var verdict domain.Verdict
	actor := events.Actor{Kind: events.ActorDevice, ID: cmd.Source.DeviceID}
	mistyped := domain.Mistyped(cmd.Passcode.Plain())
	out, err := s.execute(ctx, cmd.Site, actor, func(p *domain.Passcode, now time.Time) (events.Payload, error) {
		a := domain.Attempt{ID: cmd.AttemptID, Source: cmd.Source, Mistyped: mistyped}
		if g, ok := p.Current(); ok {
			var err error
			if a.CandidateMAC, err = s.keeper.MAC(g.HashKeyID, cmd.Passcode); err != nil {
				return nil, fmt.Errorf("hash candidate: %w", err)
			}
			// Earlier generations hashed under a rotated key.
			for _, keyID := range p.CandidateKeyIDs(now) {
				mac, err := s.keeper.MAC(keyID, cmd.Passcode)
				if err != nil {
					continue // a key this replica lacks: that generation cannot match
				}
				a.OtherMACs = append(a.OtherMACs, domain.KeyedMAC{KeyID: keyID, MAC: mac})
			}
		}
		var payload events.Payload
		verdict, payload = p.Verify(now, a)
		return payload, nil
	})
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify passcode: %w", err)
	}
	return VerifyResult{Verdict: verdict, Site: cmd.Site, Seq: out.Seq}, nil
}
