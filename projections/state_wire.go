package projections

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// The durable read model re-encodes a site's whole state on every batch that
// touches it: a compact binary form, no reflection, varints.
//
// Version 4 layout (uvarint: encoding/binary.AppendUvarint, varint: the
// zig-zag AppendVarint, str: uvarint length then bytes):
//
//	byte 4
//	str site, uvarint seq, byte flags (flagGen, flagDisabled, flagRetiring)
//	gen: str id, varint at, str by, byte checked, varint expires_at,
//	     uvarint max_enrollments, uvarint enrollments, varint last_enrolled_at
//	disabled: varint at, str by, str reason
//	retiring: str id, varint until
//	the failure log (domain.FailureLog.AppendBinary)
//
// Earlier versions kept the failures in a form of the read model's own; a
// state of one is refused, and the read model rebuilt from the stream.
const wireVersion = 4

const (
	flagGen = 1 << iota
	flagDisabled
	flagRetiring
)

var errShort = errors.New("truncated")

// MarshalBinary encodes the state for a durable read model.
func (s *SiteState) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 96+len(s.site))
	b = append(b, wireVersion)
	b = appendWireString(b, s.site)
	b = binary.AppendUvarint(b, s.seq)
	var flags byte
	g := s.gen
	if g != nil {
		flags |= flagGen
		if g.disabled != nil {
			flags |= flagDisabled
		}
	}
	if s.retiring != nil {
		flags |= flagRetiring
	}
	b = append(b, flags)
	if g != nil {
		b = appendWireString(b, g.id)
		b = binary.AppendVarint(b, g.generatedAt)
		b = appendWireString(b, g.generatedBy)
		b = append(b, boolByte(g.checked))
		b = binary.AppendVarint(b, g.expiresAt)
		b = binary.AppendUvarint(b, uint64(g.maxEnrollments))
		b = binary.AppendUvarint(b, uint64(g.enrollments))
		b = binary.AppendVarint(b, g.lastEnrolledAt)
		if d := g.disabled; d != nil {
			b = binary.AppendVarint(b, d.at)
			b = appendWireString(b, d.by)
			b = appendWireString(b, string(d.reason))
		}
	}
	if r := s.retiring; r != nil {
		b = appendWireString(b, r.id)
		b = binary.AppendVarint(b, r.until)
	}
	return s.log.AppendBinary(b), nil
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func appendWireString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeSiteState decodes what MarshalBinary wrote, under the given defaults.
func DecodeSiteState(b []byte, defaults domain.Policy) (*SiteState, error) {
	if len(b) == 0 || b[0] != wireVersion {
		return nil, fmt.Errorf("decode site state: not version %d", wireVersion)
	}
	r := &wireReader{b: b[1:]}
	s := &SiteState{defaults: defaults}
	s.site = r.string()
	s.seq = r.uvarint()
	flags := r.oneByte()
	if flags&^(flagGen|flagDisabled|flagRetiring) != 0 {
		r.fail(fmt.Errorf("unknown flags %#x", flags))
	}
	if flags&flagGen != 0 {
		g := &generation{id: r.string(), generatedAt: r.varint(), generatedBy: r.string(), checked: r.oneByte() == 1,
			expiresAt: r.varint(), maxEnrollments: int(min(r.uvarint(), domain.MaxMaxEnrollments)),
			enrollments: int(min(r.uvarint(), domain.MaxMaxEnrollments)), lastEnrolledAt: r.varint()}
		if flags&flagDisabled != 0 {
			g.disabled = &disableInfo{at: r.varint(), by: r.string(), reason: events.DisableReason(r.string())}
		}
		s.gen = g
	} else if flags&flagDisabled != 0 {
		r.fail(fmt.Errorf("flags %#x without a generation", flags))
	}
	if flags&flagRetiring != 0 {
		s.retiring = &retiringInfo{id: r.string(), until: r.varint()}
	}
	if r.err == nil {
		log, rest, err := domain.DecodeFailureLog(r.b)
		switch {
		case err != nil:
			r.fail(err)
		case len(rest) != 0:
			r.fail(fmt.Errorf("%d trailing bytes", len(rest)))
		}
		s.log = log
	}
	if r.err != nil {
		return nil, fmt.Errorf("decode site state %q: %w", s.site, r.err)
	}
	return s, nil
}

// wireReader reads the fields; the first error sticks, so DecodeSiteState
// checks once at the end.
type wireReader struct {
	b   []byte
	err error
}

func (r *wireReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *wireReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errShort)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(errShort)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) oneByte() byte {
	if len(r.b) == 0 {
		r.fail(errShort)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// string reads a length and its bytes, rejecting a length longer than what
// is left, so that garbage cannot make it allocate.
func (r *wireReader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail(fmt.Errorf("length %d exceeds the %d bytes left", n, len(r.b)))
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
