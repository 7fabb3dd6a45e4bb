package projections

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// The durable read model re-encodes a site's whole state on every batch that
// touches it, so a site under attack (hundreds of source keys in the window)
// paid for a JSON encoding with sorted map keys per event. Version 3 is a
// compact binary form instead: no reflection, no key sorting, varints.
//
// Version 3 layout (uvarint: encoding/binary.AppendUvarint, varint: the
// zig-zag AppendVarint, str: uvarint length then bytes, times: uvarint count,
// then the first time and each later one as a varint delta from the one
// before, since they are kept oldest first):
//
//	byte 3 (never the first byte of JSON, so version 2 stays decodable)
//	str site, uvarint seq, byte flags (flagOverride, flagGen, flagLocked, flagDisabled)
//	override: varint max_failed, varint window (ns)
//	gen: str id, varint at, str by, [disabled: varint at, str by, str reason],
//	     times failures, uvarint n, n × (str key, times)
//	uvarint n, n × (str key, times)   (per-source failures)
//
// Map entries are written in map order: the bytes of equal states may differ,
// their decoded states do not.
const (
	wireVersionJSON   = 2 // JSON with sorted keys; still decoded
	wireVersionBinary = 3
)

const (
	flagOverride = 1 << iota
	flagGen
	flagLocked
	flagDisabled
	// flagLifecycle: a lifecycle section follows the per-source failures
	// (the mode, the generation's lifecycle, the retiring generation).
	// States written before it have none, and decode as before.
	flagLifecycle
)

var errShort = errors.New("truncated")

// MarshalBinary encodes the state for a durable read model (version 3).
func (s *SiteState) MarshalBinary() ([]byte, error) {
	// A size guess good enough that a busy site is encoded without regrowing.
	n := 32 + len(s.site) + 28*len(s.sources)
	if g := s.gen; g != nil {
		n += 64 + len(g.ID) + len(g.GeneratedBy) + 6*len(g.Failures) + 28*len(g.BySource)
	}
	b := make([]byte, 0, n)
	b = append(b, wireVersionBinary)
	b = appendWireString(b, s.site)
	b = binary.AppendUvarint(b, s.seq)
	var flags byte
	if s.override != nil {
		flags |= flagOverride
	}
	g := s.gen
	if g != nil {
		flags |= flagGen
		if g.Locked {
			flags |= flagLocked
		}
		if g.Disabled != nil {
			flags |= flagDisabled
		}
	}
	if s.hasLifecycle() {
		flags |= flagLifecycle
	}
	b = append(b, flags)
	if o := s.override; o != nil {
		b = binary.AppendVarint(b, int64(o.MaxFailed))
		b = binary.AppendVarint(b, int64(o.Window))
	}
	if g != nil {
		b = appendWireString(b, g.ID)
		b = binary.AppendVarint(b, g.GeneratedAt)
		b = appendWireString(b, g.GeneratedBy)
		if d := g.Disabled; d != nil {
			b = binary.AppendVarint(b, d.At)
			b = appendWireString(b, d.By)
			b = appendWireString(b, string(d.Reason))
		}
		b = appendTimes(b, g.Failures)
		b = appendTimesMap(b, g.BySource)
	}
	b = appendTimesMap(b, s.sources)
	if flags&flagLifecycle != 0 {
		b = s.appendLifecycle(b)
	}
	return b, nil
}

func (s *SiteState) hasLifecycle() bool {
	return (s.override != nil && s.override.Mode != "") || s.retiring != nil || (s.gen != nil && s.gen.hasLifecycle())
}

// appendLifecycle writes the lifecycle section: str mode, [gen: byte
// checked, varint expires_at, uvarint max_enrollments, uvarint enrollments,
// varint last_enrolled_at, byte has_source, [4 × str source]], byte
// has_retiring, [str id, varint until].
func (s *SiteState) appendLifecycle(b []byte) []byte {
	var mode string
	if s.override != nil {
		mode = string(s.override.Mode)
	}
	b = appendWireString(b, mode)
	if g := s.gen; g != nil {
		b = append(b, boolByte(g.Checked))
		b = binary.AppendVarint(b, g.ExpiresAt)
		b = binary.AppendUvarint(b, uint64(g.MaxEnrollments))
		b = binary.AppendUvarint(b, uint64(g.Enrollments))
		b = binary.AppendVarint(b, g.LastEnrolledAt)
		b = append(b, boolByte(g.LastFailedSource != nil))
		if src := g.LastFailedSource; src != nil {
			for _, f := range []string{src.IP, src.DeviceID, src.Platform, src.UserAgent} {
				b = appendWireString(b, f)
			}
		}
	}
	b = append(b, boolByte(s.retiring != nil))
	if r := s.retiring; r != nil {
		b = appendWireString(b, r.ID)
		b = binary.AppendVarint(b, r.Until)
	}
	return b
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func (r *wireReader) readLifecycle(s *SiteState) {
	mode := events.LockoutMode(r.string())
	if s.override != nil {
		s.override.Mode = mode
	}
	if g := s.gen; g != nil {
		g.Checked = r.oneByte() == 1
		g.ExpiresAt = r.varint()
		g.MaxEnrollments = int(min(r.uvarint(), domain.MaxMaxEnrollments))
		g.Enrollments = int(min(r.uvarint(), domain.MaxMaxEnrollments))
		g.LastEnrolledAt = r.varint()
		if r.oneByte() == 1 {
			g.LastFailedSource = &events.Source{IP: r.string(), DeviceID: r.string(), Platform: r.string(), UserAgent: r.string()}
		}
	}
	if r.oneByte() == 1 {
		s.retiring = &retiringInfo{ID: r.string(), Until: r.varint()}
	}
}

func appendWireString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTimes(b []byte, ts []int64) []byte {
	b = binary.AppendUvarint(b, uint64(len(ts)))
	var prev int64
	for _, t := range ts {
		b = binary.AppendVarint(b, t-prev)
		prev = t
	}
	return b
}

func appendTimesMap(b []byte, m map[string][]int64) []byte {
	b = binary.AppendUvarint(b, uint64(len(m)))
	for k, ts := range m {
		b = appendWireString(b, k)
		b = appendTimes(b, ts)
	}
	return b
}

// DecodeSiteState decodes what MarshalBinary wrote (version 3) or what it
// wrote before (version 2, JSON), under the given defaults.
func DecodeSiteState(b []byte, defaults domain.Policy) (*SiteState, error) {
	if len(b) > 0 && b[0] == wireVersionBinary {
		s, err := decodeBinary(b[1:], defaults)
		if err != nil {
			return nil, fmt.Errorf("decode site state (v%d): %w", wireVersionBinary, err)
		}
		return s, nil
	}
	var w wireState
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decode site state: %w", err)
	}
	if w.V != wireVersionJSON {
		return nil, fmt.Errorf("decode site state of %s: version %d, want %d or %d", w.Site, w.V, wireVersionJSON, wireVersionBinary)
	}
	return &SiteState{site: w.Site, seq: w.Seq, defaults: defaults, override: w.Override, gen: w.Gen, sources: w.Sources}, nil
}

// wireState is the version 2 (JSON) form of a SiteState. The default policy
// is not part of it: it comes from configuration when the state is loaded.
type wireState struct {
	V        int                `json:"v"`
	Site     string             `json:"site"`
	Seq      uint64             `json:"seq"`
	Override *lockout           `json:"override,omitempty"`
	Gen      *generation        `json:"gen,omitempty"`
	Sources  map[string][]int64 `json:"sources,omitempty"`
}

// wireReader reads version 3 fields; the first error sticks, so decodeBinary
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

// count reads a length and rejects one that cannot fit in what is left (each
// element takes at least min bytes), so garbage cannot make us allocate.
func (r *wireReader) count(minSize int) int {
	n := r.uvarint()
	if n > uint64(len(r.b)/minSize) {
		r.fail(fmt.Errorf("count %d exceeds the %d bytes left", n, len(r.b)))
		return 0
	}
	return int(n)
}

func (r *wireReader) string() string {
	n := r.count(1)
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// times returns nil for no times, as the JSON form did (omitempty).
func (r *wireReader) times() []int64 {
	n := r.count(1)
	if n == 0 {
		return nil
	}
	ts := make([]int64, n)
	var prev int64
	for i := range ts {
		prev += r.varint()
		ts[i] = prev
	}
	return ts
}

func (r *wireReader) timesMap() map[string][]int64 {
	n := r.count(2) // key length and times count
	if n == 0 {
		return nil
	}
	m := make(map[string][]int64, n)
	for range n {
		k := r.string()
		m[k] = r.times()
	}
	return m
}

func decodeBinary(b []byte, defaults domain.Policy) (*SiteState, error) {
	r := &wireReader{b: b}
	s := &SiteState{defaults: defaults}
	s.site = r.string()
	s.seq = r.uvarint()
	flags := r.oneByte()
	if flags&^(flagOverride|flagGen|flagLocked|flagDisabled|flagLifecycle) != 0 {
		r.fail(fmt.Errorf("unknown flags %#x", flags))
	}
	if flags&flagOverride != 0 {
		s.override = &lockout{MaxFailed: int(r.varint()), Window: time.Duration(r.varint())}
	}
	if flags&flagGen != 0 {
		g := &generation{ID: r.string(), GeneratedAt: r.varint(), GeneratedBy: r.string(), Locked: flags&flagLocked != 0}
		if flags&flagDisabled != 0 {
			g.Disabled = &disableInfo{At: r.varint(), By: r.string(), Reason: events.DisableReason(r.string())}
		}
		g.Failures = r.times()
		g.BySource = r.timesMap()
		s.gen = g
	} else if flags&(flagLocked|flagDisabled) != 0 {
		r.fail(fmt.Errorf("flags %#x without a generation", flags))
	}
	s.sources = r.timesMap()
	if flags&flagLifecycle != 0 {
		r.readLifecycle(s)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Errorf("%d trailing bytes", len(r.b)))
	}
	if r.err != nil {
		return nil, fmt.Errorf("site %q: %w", s.site, r.err)
	}
	return s, nil
}
