package domain

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/wirebin"
)

// The log encodes itself for the durable read model, so that its fields stay
// private to the rules. Layout (uvarint and varint as encoding/binary appends
// them, str: uvarint length then bytes, times: uvarint count then each time
// as a varint delta from the one before):
//
//	byte flags (logOverride, logLock, logLastFailed)
//	override: varint max_failed, varint window (ns), str mode
//	lock: varint at, varint max_failed, varint window (ns)
//	uvarint n, n × (varint at delta, source)   (failures)
//	last failed: source
//	uvarint n, n × (str key, times)   (per-source failure times)
//
// The failures of one source share its record, so a source is written once:
// a source is the uvarint index of one written before, or, the count of
// those written before, a new one: 4 × str (ip, device_id, platform,
// user_agent).
const (
	logOverride = 1 << iota
	logLock
	logLastFailed
)

// AppendBinary appends the encoding of the log to b.
func (l *FailureLog) AppendBinary(b []byte) []byte {
	// A guess good enough that a busy site is encoded without regrowing.
	b = slices.Grow(b, 32+40*len(l.failures)+32*len(l.sources))
	var flags byte
	if l.override != nil {
		flags |= logOverride
	}
	if l.lock != nil {
		flags |= logLock
	}
	if l.lastFailed != nil {
		flags |= logLastFailed
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
	w := sourceWriter{index: make(map[*failureSource]int, len(l.failures)+1)}
	b = binary.AppendUvarint(b, uint64(len(l.failures)))
	var prev int64
	for _, f := range l.failures {
		b = binary.AppendVarint(b, f.at-prev)
		b = w.append(b, f.src)
		prev = f.at
	}
	if l.lastFailed != nil {
		b = w.append(b, l.lastFailed)
	}
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

// sourceWriter writes each source once, then its index.
type sourceWriter struct{ index map[*failureSource]int }

func (w sourceWriter) append(b []byte, fs *failureSource) []byte {
	if i, ok := w.index[fs]; ok {
		return binary.AppendUvarint(b, uint64(i))
	}
	b = binary.AppendUvarint(b, uint64(len(w.index)))
	w.index[fs] = len(w.index)
	for _, f := range [...]string{fs.source.IP, fs.source.DeviceID, fs.source.Platform, fs.source.UserAgent} {
		b = wirebin.AppendString(b, f)
	}
	return b
}

// DecodeFailureLog reads a log that AppendBinary wrote from r; r's error
// says whether it could.
func DecodeFailureLog(r *wirebin.Reader) FailureLog {
	var l FailureLog
	flags := r.Byte()
	if flags&^(logOverride|logLock|logLastFailed) != 0 {
		r.Fail(fmt.Errorf("unknown failure log flags %#x", flags))
	}
	if flags&logOverride != 0 {
		l.override = &lockout{maxFailed: int(r.Varint()), window: time.Duration(r.Varint()), mode: events.LockoutMode(r.Str())}
	}
	if flags&logLock != 0 {
		l.lock = &lockInfo{at: unixTime(r.Varint()), maxFailed: int(r.Varint()), window: time.Duration(r.Varint())}
	}
	var srcs []*failureSource
	source := func() *failureSource {
		switch i := r.Uvarint(); {
		case i < uint64(len(srcs)):
			return srcs[i]
		case i == uint64(len(srcs)):
			s := events.Source{IP: r.Str(), DeviceID: r.Str(), Platform: r.Str(), UserAgent: r.Str()}
			srcs = append(srcs, &failureSource{source: s, keys: keysOf(s)})
			return srcs[i]
		default:
			r.Fail(fmt.Errorf("source %d of %d", i, len(srcs)))
			return &failureSource{}
		}
	}
	if n := r.Count(2); n > 0 {
		l.failures = make([]failure, n)
		srcs = make([]*failureSource, 0, n+1)
		var prev int64
		for i := range l.failures {
			prev += r.Varint()
			l.failures[i] = failure{at: prev, src: source()}
		}
	}
	if flags&logLastFailed != 0 {
		l.lastFailed = source()
	}
	if n := r.Count(2); n > 0 {
		l.sources = make([]sourceTimes, n)
		for i := range l.sources {
			st := sourceTimes{key: r.Str(), times: make([]int64, r.Count(1))}
			if i > 0 && st.key <= l.sources[i-1].key {
				r.Fail(fmt.Errorf("source key %q out of order", st.key))
			}
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
