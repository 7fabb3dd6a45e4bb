package handlers

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/enrollgate/enrollgate/events"
)

// ErrConflict is what an EventStore returns when the site's last sequence is
// no longer the one the command decided on.
var ErrConflict = errors.New("append conflict: the site changed concurrently")

// ErrBusy is returned when a command still conflicted after all its retries.
var ErrBusy = errors.New("site too busy: gave up after repeated append conflicts")

// ErrUnavailable is wrapped by an EventStore that cannot tell whether an
// append was stored (the log did not answer): the command may or may not have
// taken effect. The caller may try again later; a retried command decides on
// the site as it then is.
var ErrUnavailable = errors.New("event log unavailable")

// ErrUpgradeRequired is wrapped by an EventStore whose site holds an
// authentic event of a type this build does not know (written by a newer
// version): the site cannot be decided on until this replica is upgraded.
var ErrUpgradeRequired = errors.New("the event log holds an event type this version does not know: upgrade required")

// ErrKeyUnavailable is wrapped by a SecretKeeper asked for a key it does not
// hold (a generation hashed or sealed under a key this replica lacks): the
// site cannot be verified or revealed here until the key is loaded.
var ErrKeyUnavailable = errors.New("a key named by the event log is not loaded on this replica")

// EventStore is the event log of all sites.
type EventStore interface {
	// Load returns the site's events with a sequence above afterSeq, in order.
	// Messages on the site's subject that are not its events (not written by
	// the service) are left out; when the last ones read are such messages,
	// the result ends with a gap: a Record with their last sequence and no
	// Event.Data, which only moves the caller's position past them (its next
	// Append expects that sequence). An authentic event of an unknown type is
	// an error wrapping ErrUpgradeRequired.
	Load(ctx context.Context, site events.Site, afterSeq uint64) ([]events.Record, error)
	// Append stores e, authenticated, on its site's subject if the site's
	// last stored message is still expectedSeq (0: none), and returns the
	// stream sequence of e. It
	// returns an error wrapping ErrConflict when it is not. An append that is
	// retried after an uncertain outcome and finds e already stored succeeds
	// with the stored sequence.
	Append(ctx context.Context, e events.Event, expectedSeq uint64) (uint64, error)
	// LastSeq returns the sequence of the site's last stored message (an
	// event, or a gap that Load reports), 0 for none.
	LastSeq(ctx context.Context, site events.Site) (uint64, error)
}

// SecretKeeper generates passcodes and holds the keys that hash and seal
// them.
type SecretKeeper interface {
	// NewPasscode returns a fresh random passcode.
	NewPasscode() (Secret, error)
	// MACKeyID names the key new generations are hashed with.
	MACKeyID() string
	// MAC returns the HMAC-SHA256 of a passcode under the key keyID.
	MAC(keyID string, passcode Secret) ([]byte, error)
	// Seal encrypts a passcode under the current sealing key.
	Seal(passcode Secret) (sealed []byte, keyID string, err error)
	// Open decrypts a sealed passcode.
	Open(keyID string, sealed []byte) (Secret, error)
}

// Clock tells the time.
type Clock interface{ Now() time.Time }

// IDGenerator makes event and generation IDs.
type IDGenerator interface{ NewID() string }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// ULIDs makes monotonic ULIDs from crypto/rand. Safe for concurrent use.
type ULIDs struct {
	mu      sync.Mutex
	entropy *ulid.MonotonicEntropy
}

// NewULIDs returns a ULID generator.
func NewULIDs() *ULIDs { return &ULIDs{entropy: ulid.Monotonic(rand.Reader, 0)} }

// NewID implements IDGenerator.
func (g *ULIDs) NewID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return ulid.MustNew(ulid.Now(), g.entropy).String()
}
