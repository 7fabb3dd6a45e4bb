package domain

import (
	"errors"
	"fmt"
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// Bounds of a lockout policy.
const (
	MinMaxFailedAttempts = 1
	MaxMaxFailedAttempts = 1000
	MinFailureWindow     = time.Minute
	MaxFailureWindow     = 30 * 24 * time.Hour
)

// ErrInvalidPolicy is wrapped by every policy validation error.
var ErrInvalidPolicy = errors.New("invalid lockout policy")

// Policy is the lockout policy in force for a site.
type Policy struct {
	// MaxFailedAttempts is the number of failures, counted in FailureWindow,
	// at which the passcode is locked.
	MaxFailedAttempts int
	// FailureWindow is how long a failure counts; 0 counts every failure
	// since the passcode was generated.
	FailureWindow time.Duration
	// MaxFailedPerSource is how many failures one source (IP or device ID) may
	// make in SourceWindow before it is throttled. It is always kept below
	// MaxFailedAttempts (see SourceLimit), so that one source alone can never
	// lock a site.
	MaxFailedPerSource int
	// SourceWindow is how long a failure counts against its source.
	SourceWindow time.Duration
	// Mode is the site's lockout mode: enforce (also the zero value) locks a
	// passcode that reaches the threshold, monitor only reports it.
	Mode events.LockoutMode
	// OutdatedGenerations is how many replaced generations a candidate is
	// compared with to answer outdated; 0 turns outdated off.
	OutdatedGenerations int
	// OutdatedFor is how long after its replacement a generation answers
	// outdated; 0 turns outdated off.
	OutdatedFor time.Duration
}

// DefaultPolicy is the policy of DESIGN.md: 10 failures in an hour, 5 per
// source in 15 minutes.
func DefaultPolicy() Policy {
	return Policy{MaxFailedAttempts: 10, FailureWindow: time.Hour, MaxFailedPerSource: 5, SourceWindow: 15 * time.Minute,
		OutdatedGenerations: DefaultOutdatedGenerations, OutdatedFor: DefaultOutdatedFor}
}

// Defaults and bounds of the outdated answer.
const (
	DefaultOutdatedGenerations = 3
	MaxOutdatedGenerations     = 10
	DefaultOutdatedFor         = 30 * 24 * time.Hour
	MaxOutdatedFor             = 365 * 24 * time.Hour
)

// ValidateMode checks a lockout mode: enforce or monitor ("" is enforce).
func ValidateMode(m events.LockoutMode) error {
	switch m {
	case "", events.ModeEnforce, events.ModeMonitor:
		return nil
	}
	return fmt.Errorf("%w: mode must be enforce or monitor", ErrInvalidPolicy)
}

// outdatedOn reports whether outdated answers are on.
func (p Policy) outdatedOn() bool { return p.OutdatedGenerations > 0 && p.OutdatedFor > 0 }

// ValidateLockout checks a site threshold and window against the bounds.
func ValidateLockout(maxFailed int, window time.Duration) error {
	var errs []error
	if maxFailed < MinMaxFailedAttempts || maxFailed > MaxMaxFailedAttempts {
		errs = append(errs, fmt.Errorf("max_failed_attempts must be %d to %d, got %d", MinMaxFailedAttempts, MaxMaxFailedAttempts, maxFailed))
	}
	if window != 0 && (window < MinFailureWindow || window > MaxFailureWindow) {
		errs = append(errs, fmt.Errorf("failure_window must be 0 or %s to %s, got %s", MinFailureWindow, "720h", window))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidPolicy, errors.Join(errs...))
	}
	return nil
}

// Validate checks the whole policy and reports every problem at once.
func (p Policy) Validate() error {
	var errs []error
	if err := ValidateLockout(p.MaxFailedAttempts, p.FailureWindow); err != nil {
		errs = append(errs, err)
	}
	if p.MaxFailedPerSource < 1 {
		errs = append(errs, fmt.Errorf("%w: max failed attempts per source must be at least 1, got %d", ErrInvalidPolicy, p.MaxFailedPerSource))
	}
	if p.SourceWindow <= 0 {
		errs = append(errs, fmt.Errorf("%w: source window must be positive, got %s", ErrInvalidPolicy, p.SourceWindow))
	}
	if err := ValidateMode(p.Mode); err != nil {
		errs = append(errs, err)
	}
	if p.OutdatedGenerations < 0 || p.OutdatedGenerations > MaxOutdatedGenerations {
		errs = append(errs, fmt.Errorf("%w: outdated generations must be 0 to %d, got %d", ErrInvalidPolicy, MaxOutdatedGenerations, p.OutdatedGenerations))
	}
	if p.OutdatedFor < 0 || p.OutdatedFor > MaxOutdatedFor {
		errs = append(errs, fmt.Errorf("%w: outdated-for must be 0 to 8760h, got %s", ErrInvalidPolicy, p.OutdatedFor))
	}
	return errors.Join(errs...)
}

// SourceLimit is the per-source failure limit in force: the configured one,
// kept below the site threshold so that one source alone never reaches it
// (with a threshold of 1 nothing is below it, and the limit is 1).
func (p Policy) SourceLimit() int {
	limit := p.MaxFailedPerSource
	if limit >= p.MaxFailedAttempts {
		limit = p.MaxFailedAttempts - 1
	}
	return max(limit, 1)
}

// DefaultSourceLimit is the per-source default of DESIGN.md: half the site
// threshold, at least 1.
func DefaultSourceLimit(maxFailed int) int { return max(maxFailed/2, 1) }
