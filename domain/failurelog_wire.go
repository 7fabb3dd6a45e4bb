package domain

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/wirebin"
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
		b = wirebin.AppendString(b, string(o.mode))
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
			b = wirebin.AppendString(b, f)
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
		b = wirebin.AppendString(b, st.key)
		b = binary.AppendUvarint(b, uint64(len(st.times)))
		prev = 0
		for _, t := range st.times {
			b = binary.AppendVarint(b, t-prev)
			prev = t
		}
	}
	return b
}

// DecodeFailureLog reads a log that AppendBinary wrote from r; r's error
// says whether it could.
func DecodeFailureLog(r *wirebin.Reader) FailureLog {
	var l FailureLog
	flags := r.Byte()
	if flags&^(logOverride|logLock) != 0 {
		r.Fail(fmt.Errorf("unknown failure log flags %#x", flags))
	}
	if flags&logOverride != 0 {
		l.override = &lockout{maxFailed: int(r.Varint()), window: time.Duration(r.Varint()), mode: events.LockoutMode(r.Str())}
	}
	if flags&logLock != 0 {
		l.lock = &lockInfo{at: unixTime(r.Varint()), maxFailed: int(r.Varint()), window: time.Duration(r.Varint())}
	}
	srcs := make([]*failureSource, r.Count(4))
	for i := range srcs {
		s := events.Source{IP: r.Str(), DeviceID: r.Str(), Platform: r.Str(), UserAgent: r.Str()}
		srcs[i] = &failureSource{source: s, keys: keysOf(s)}
	}
	source := func(i uint64) *failureSource {
		if i >= uint64(len(srcs)) {
			r.Fail(fmt.Errorf("source index %d of %d", i, len(srcs)))
			return &failureSource{}
		}
		return srcs[i]
	}
	if n := r.Count(2); n > 0 {
		l.failures = make([]failure, n)
		var prev int64
		for i := range l.failures {
			prev += r.Varint()
			l.failures[i] = failure{at: prev, src: source(r.Uvarint())}
		}
	}
	if i := r.Uvarint(); i > 0 {
		l.lastFailed = source(i - 1)
	}
	if n := r.Count(2); n > 0 {
		l.sources = make([]sourceTimes, n)
		for i := range l.sources {
			st := sourceTimes{key: r.Str(), times: make([]int64, r.Count(1))}
			var prev int64
			for j := range st.times {
				prev += r.Varint()
				st.times[j] = prev
			}
			l.sources[i] = st
		}
	}
	if r.Err() != nil {
		return FailureLog{}
	}
	return l
}
