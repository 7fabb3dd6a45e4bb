package projections

import (
	"encoding/binary"
	"fmt"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/wirebin"
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

// MarshalBinary encodes the state for a durable read model.
func (s *SiteState) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 96+len(s.site))
	b = append(b, wireVersion)
	b = wirebin.AppendString(b, s.site)
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
		b = wirebin.AppendString(b, g.id)
		b = binary.AppendVarint(b, g.generatedAt)
		b = wirebin.AppendString(b, g.generatedBy)
		b = append(b, boolByte(g.checked))
		b = binary.AppendVarint(b, g.expiresAt)
		b = binary.AppendUvarint(b, uint64(g.maxEnrollments))
		b = binary.AppendUvarint(b, uint64(g.enrollments))
		b = binary.AppendVarint(b, g.lastEnrolledAt)
		if d := g.disabled; d != nil {
			b = binary.AppendVarint(b, d.at)
			b = wirebin.AppendString(b, d.by)
			b = wirebin.AppendString(b, string(d.reason))
		}
	}
	if r := s.retiring; r != nil {
		b = wirebin.AppendString(b, r.id)
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

// DecodeSiteState decodes what MarshalBinary wrote, under the given defaults.
func DecodeSiteState(b []byte, defaults domain.Policy) (*SiteState, error) {
	if len(b) == 0 || b[0] != wireVersion {
		return nil, fmt.Errorf("decode site state: not version %d", wireVersion)
	}
	r := wirebin.NewReader(b[1:])
	s := &SiteState{defaults: defaults}
	s.site = r.Str()
	s.seq = r.Uvarint()
	flags := r.Byte()
	if flags&^(flagGen|flagDisabled|flagRetiring) != 0 {
		r.Fail(fmt.Errorf("unknown flags %#x", flags))
	}
	if flags&flagGen != 0 {
		g := &generation{id: r.Str(), generatedAt: r.Varint(), generatedBy: r.Str(), checked: r.Byte() == 1,
			expiresAt: r.Varint(), maxEnrollments: int(min(r.Uvarint(), domain.MaxMaxEnrollments)),
			enrollments: int(min(r.Uvarint(), domain.MaxMaxEnrollments)), lastEnrolledAt: r.Varint()}
		if flags&flagDisabled != 0 {
			g.disabled = &disableInfo{at: r.Varint(), by: r.Str(), reason: events.DisableReason(r.Str())}
		}
		s.gen = g
	} else if flags&flagDisabled != 0 {
		r.Fail(fmt.Errorf("flags %#x without a generation", flags))
	}
	if flags&flagRetiring != 0 {
		s.retiring = &retiringInfo{id: r.Str(), until: r.Varint()}
	}
	s.log = domain.DecodeFailureLog(r)
	if r.Err() == nil && r.Len() != 0 {
		r.Fail(fmt.Errorf("%d trailing bytes", r.Len()))
	}
	if r.Err() != nil {
		return nil, fmt.Errorf("decode site state %q: %w", s.site, r.Err())
	}
	return s, nil
}
