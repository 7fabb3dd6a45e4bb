package eventstore

import (
	"context"
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
)

// Keys hold the keys that authenticate stored events; every replica has the
// same. secrets.Keeper implements it.
type Keys interface {
	// EventMACKeyID names the key new events are signed with.
	EventMACKeyID() string
	// NewEventMAC returns an HMAC-SHA256 under the event-MAC key keyID;
	// false when the key is unknown.
	NewEventMAC(keyID string) (hash.Hash, bool)
}

// MetaMACRequiredFrom is the key, in the events stream's metadata, of the
// first stream sequence from which every message must carry a MAC. Messages
// before it were stored before events were authenticated and are trusted
// without one. WARNING: stored in the stream's configuration; never rename.
const MetaMACRequiredFrom = "enrollgate_mac_required_from"

// ErrNotAuthentic is wrapped by Authenticate for a message on the events
// stream that the service did not write.
var ErrNotAuthentic = errors.New("message not written by the service")

// macDomain starts every MAC input, so that an event MAC can never be taken
// for the MAC of anything else under the same key.
const macDomain = "enrollgate/event/v1"

// Authenticator signs the events the store appends and tells them from
// anything else on the stream. Safe for concurrent use; immutable.
type Authenticator struct {
	keys Keys
	// requiredFrom is the first sequence at which a MAC is mandatory; 0
	// when the stream records none (EnsureStream of this version never ran
	// on it): then only a message that carries a MAC is checked.
	requiredFrom uint64
}

// NewAuthenticator returns the authenticator of the events stream that
// EnsureStream returned (its cached info holds the MAC boundary).
func NewAuthenticator(keys Keys, stream jetstream.Stream) (*Authenticator, error) {
	if keys == nil || stream == nil {
		return nil, errors.New("event authenticator: keys and stream are required")
	}
	if id := keys.EventMACKeyID(); id == "" {
		return nil, errors.New("event authenticator: no current event-MAC key")
	} else if _, ok := keys.NewEventMAC(id); !ok {
		return nil, fmt.Errorf("event authenticator: current event-MAC key %s is unknown to the keys", id)
	}
	info := stream.CachedInfo()
	if info == nil {
		return nil, errors.New("event authenticator: stream has no cached info; pass the stream EnsureStream returned")
	}
	a := &Authenticator{keys: keys}
	if v, ok := info.Config.Metadata[MetaMACRequiredFrom]; ok {
		from, err := strconv.ParseUint(v, 10, 64)
		if err != nil || from == 0 {
			return nil, fmt.Errorf("event authenticator: stream %s metadata %s is %q, want a sequence", info.Config.Name, MetaMACRequiredFrom, truncate(v))
		}
		a.requiredFrom = from
	}
	return a, nil
}

// OpenAuthenticator returns the authenticator of the existing events stream,
// for tools that read it without serving (a rebuild of the read model).
func OpenAuthenticator(ctx context.Context, js jetstream.JetStream, keys Keys) (*Authenticator, error) {
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, fmt.Errorf("event authenticator: stream %s: %w", events.StreamName, err)
	}
	return NewAuthenticator(keys, stream)
}

// RequiredFrom returns the first stream sequence at which a MAC is
// mandatory, 0 when none is.
func (a *Authenticator) RequiredFrom() uint64 { return a.requiredFrom }

// SignMsg sets the MAC header of msg, an event about to be stored, from its
// subject, headers and data. Append is the one writer of events; this is
// for tests and tools that build a history without it.
func (a *Authenticator) SignMsg(msg *nats.Msg) error {
	h := msg.Header
	v, err := a.sign(msg.Subject, h.Get(jetstream.MsgIDHeader), h.Get(events.HeaderEventType), h.Get(jetstream.ExpectedLastSubjSeqHeader), msg.Data)
	if err != nil {
		return err
	}
	h.Set(events.HeaderMAC, v)
	return nil
}

// sign returns the MAC header value of a message: "<key-id>:<base64>".
func (a *Authenticator) sign(subject, msgID, typ, expected string, data []byte) (string, error) {
	id := a.keys.EventMACKeyID()
	m, ok := a.keys.NewEventMAC(id)
	if !ok {
		return "", fmt.Errorf("sign event %s: event-MAC key %s unknown", msgID, id)
	}
	writeMACInput(m, subject, msgID, typ, expected, data)
	return id + ":" + base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
}

// Authenticate returns nil when the message stored at seq on subject was
// written by the service: it carries a valid MAC under a key the keeper
// knows, or it has none and was stored before the MAC boundary (a legacy
// event). Otherwise it returns an error wrapping ErrNotAuthentic that says
// why, naming no secret. It trusts no header it has not checked: callers
// authenticate first and only then read the event type or ID.
func (a *Authenticator) Authenticate(subject string, seq uint64, h nats.Header, data []byte) error {
	// The service writes each of these once; a second value would be
	// unauthenticated text a reader might pick.
	for _, k := range []string{events.HeaderMAC, events.HeaderEventType, jetstream.MsgIDHeader, jetstream.ExpectedLastSubjSeqHeader} {
		if len(h[k]) > 1 {
			return fmt.Errorf("%w: header %s repeated", ErrNotAuthentic, k)
		}
	}
	v := h.Get(events.HeaderMAC)
	if v == "" {
		if a.requiredFrom != 0 && seq >= a.requiredFrom {
			return fmt.Errorf("%w: no MAC (required from seq %d)", ErrNotAuthentic, a.requiredFrom)
		}
		return nil
	}
	id, b64, ok := strings.Cut(v, ":")
	got, err := base64.StdEncoding.DecodeString(b64)
	if !ok || err != nil || len(got) != 32 {
		return fmt.Errorf("%w: malformed MAC header", ErrNotAuthentic)
	}
	m, known := a.keys.NewEventMAC(id)
	if !known {
		return fmt.Errorf("%w: MAC under unknown key %q", ErrNotAuthentic, truncate(id))
	}
	writeMACInput(m, subject, h.Get(jetstream.MsgIDHeader), h.Get(events.HeaderEventType), h.Get(jetstream.ExpectedLastSubjSeqHeader), data)
	if !hmac.Equal(m.Sum(nil), got) {
		return fmt.Errorf("%w: MAC does not match", ErrNotAuthentic)
	}
	return nil
}

// Signed reports whether the message carries a MAC (Authenticate says
// whether it is valid).
func Signed(h nats.Header) bool { return h.Get(events.HeaderMAC) != "" }

// writeMACInput frames what gives a stored event its meaning: the subject
// (the site), the event ID, the type, the expectation of the append and the
// payload, each preceded by its length, so that no two different messages
// share an input. The expectation (Nats-Expected-Last-Subject-Sequence,
// which the server keeps on the stored message) makes a copy of a signed
// event useless: sent again with its header it is refused by the server,
// since the site has moved on; sent without, its MAC fails.
func writeMACInput(m hash.Hash, subject, msgID, typ, expected string, data []byte) {
	var n [8]byte
	field := func(b []byte) {
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		m.Write(n[:])
		m.Write(b)
	}
	field([]byte(macDomain))
	field([]byte(subject))
	field([]byte(msgID))
	field([]byte(typ))
	field([]byte(expected))
	field(data)
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
