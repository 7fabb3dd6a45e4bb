package domain

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/enrollgate/enrollgate/events"
)

// The log encodes itself for the durable read model, so that its fields stay
// private to the rules. Layout (uvarint and varint as encoding/binary appends
// them, str: uvarint length then bytes, times: uvarint count then each time
// as a varint delta from the one before):
//
//	byte flags (logOverride, logLock)
//	override: varint max_failed, varint window (ns), str mode
//	lock: varint at, varint max_failed, varint window (ns)
//	uvarint n, n × source (4 × str: ip, device_id, platform, user_agent)
//	uvarint n, n × (varint at delta, uvarint source index)   (failures)
//	uvarint last failed source index + 1 (0: none)
//	uvarint n, n × (str key, times)   (per-source failure times)
const (
	logOverride = 1 << iota
	logLock
)

// AppendBinary appends the encoding of the log to b.
func (l *FailureLog) AppendBinary(b []byte) []byte {
	var flags byte
	if l.override != nil {
		flags |= logOverride
	}
	if l.lock != nil {
		flags |= logLock
	}
	b = append(b, flags)
	if o := l.override; o != nil {
		b = binary.AppendVarint(b, int64(o.maxFailed))
		b = binary.AppendVarint(b, int64(o.window))
		b = appendStr(b, string(o.mode))
	}
	if k := l.lock; k != nil {
		b = binary.AppendVarint(b, unixNano(k.at))
		b = binary.AppendVarint(b, int64(k.maxFailed))
		b = binary.AppendVarint(b, int64(k.window))
	}
	// The failures of one source share one failureSource: write each once.
	var srcs []*failureSource
	index := func(fs *failureSource) int {
		for i, s := range srcs {
			if s == fs {
				return i
			}
		}
		srcs = append(srcs, fs)
		return len(srcs) - 1
	}
	idx := make([]int, len(l.failures))
	for i, f := range l.failures {
		idx[i] = index(f.src)
	}
	last := -1
	if l.lastFailed != nil {
		last = index(l.lastFailed)
	}
	b = binary.AppendUvarint(b, uint64(len(srcs)))
	for _, fs := range srcs {
		for _, f := range []string{fs.source.IP, fs.source.DeviceID, fs.source.Platform, fs.source.UserAgent} {
			b = appendStr(b, f)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(l.failures)))
	var prev int64
	for i, f := range l.failures {
		b = binary.AppendVarint(b, f.at-prev)
		b = binary.AppendUvarint(b, uint64(idx[i]))
		prev = f.at
	}
	b = binary.AppendUvarint(b, uint64(last+1))
	b = binary.AppendUvarint(b, uint64(len(l.sources)))
	for _, st := range l.sources {
		b = appendStr(b, st.key)
		b = binary.AppendUvarint(b, uint64(len(st.times)))
		prev = 0
		for _, t := range st.times {
			b = binary.AppendVarint(b, t-prev)
			prev = t
		}
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// DecodeFailureLog decodes a log that AppendBinary wrote at the start of b
// and returns the bytes after it.
func DecodeFailureLog(b []byte) (FailureLog, []byte, error) {
	r := logReader{b: b}
	var l FailureLog
	flags := r.byte()
	if flags&^(logOverride|logLock) != 0 {
		r.fail(fmt.Errorf("unknown failure log flags %#x", flags))
	}
	if flags&logOverride != 0 {
		l.override = &lockout{maxFailed: int(r.varint()), window: time.Duration(r.varint()), mode: events.LockoutMode(r.str())}
	}
	if flags&logLock != 0 {
		l.lock = &lockInfo{at: unixTime(r.varint()), maxFailed: int(r.varint()), window: time.Duration(r.varint())}
	}
	srcs := make([]*failureSource, r.count(4))
	for i := range srcs {
		s := events.Source{IP: r.str(), DeviceID: r.str(), Platform: r.str(), UserAgent: r.str()}
		srcs[i] = &failureSource{source: s, keys: keysOf(s)}
	}
	if n := r.count(2); n > 0 {
		l.failures = make([]failure, n)
		var prev int64
		for i := range l.failures {
			prev += r.varint()
			l.failures[i] = failure{at: prev, src: r.at(srcs, r.uvarint())}
		}
	}
	if i := r.uvarint(); i > 0 {
		l.lastFailed = r.at(srcs, i-1)
	}
	if n := r.count(2); n > 0 {
		l.sources = make([]sourceTimes, n)
		for i := range l.sources {
			st := sourceTimes{key: r.str(), times: make([]int64, r.count(1))}
			var prev int64
			for j := range st.times {
				prev += r.varint()
				st.times[j] = prev
			}
			l.sources[i] = st
		}
	}
	if r.err != nil {
		return FailureLog{}, nil, fmt.Errorf("failure log: %w", r.err)
	}
	return l, r.b, nil
}

var errTruncated = errors.New("truncated")

// logReader reads the log's fields; the first error sticks, so the decoder
// checks once at the end.
type logReader struct {
	b   []byte
	err error
}

func (r *logReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *logReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *logReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *logReader) byte() byte {
	if len(r.b) == 0 {
		r.fail(errTruncated)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// count reads a length and rejects one that cannot fit in what is left (each
// element takes at least minSize bytes), so that garbage cannot make it
// allocate.
func (r *logReader) count(minSize int) int {
	n := r.uvarint()
	if n > uint64(len(r.b)/minSize) {
		r.fail(fmt.Errorf("count %d exceeds the %d bytes left", n, len(r.b)))
		return 0
	}
	return int(n)
}

func (r *logReader) str() string {
	n := r.count(1)
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// at returns srcs[i], failing when i is out of range.
func (r *logReader) at(srcs []*failureSource, i uint64) *failureSource {
	if i >= uint64(len(srcs)) {
		r.fail(fmt.Errorf("source index %d of %d", i, len(srcs)))
		return &failureSource{}
	}
	return srcs[i]
}
