// Package wirebin reads and writes the compact binary form the durable read
// model stores a site's state in (projections.SiteState and the
// domain.FailureLog inside it): uvarints and zig-zag varints as
// encoding/binary writes them, and strings as a uvarint length then the
// bytes. It is pure, like the packages that use it.
package wirebin

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrShort: the input ended inside a field.
var ErrShort = errors.New("truncated")

// AppendString appends s as its length and its bytes.
func AppendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// Reader reads fields from a byte slice. The first error sticks and every
// later read returns a zero value, so that a decoder checks Err once at the
// end.
type Reader struct {
	b   []byte
	err error
}

// NewReader returns a reader of b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Err is the first error, or nil.
func (r *Reader) Err() error { return r.err }

// Len is how many bytes are left.
func (r *Reader) Len() int { return len(r.b) }

// Fail records err (unless an error is recorded already) and stops reading.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.Fail(ErrShort)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Varint reads a zig-zag varint.
func (r *Reader) Varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.Fail(ErrShort)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if len(r.b) == 0 {
		r.Fail(ErrShort)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// Count reads a number of elements and rejects one that cannot fit in what
// is left (each element takes at least minSize bytes), so that garbage
// cannot make the caller allocate.
func (r *Reader) Count(minSize int) int {
	n := r.Uvarint()
	if n > uint64(len(r.b)/minSize) {
		r.Fail(fmt.Errorf("count %d exceeds the %d bytes left", n, len(r.b)))
		return 0
	}
	return int(n)
}

// Str reads a string that AppendString wrote.
func (r *Reader) Str() string {
	n := r.Count(1)
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
