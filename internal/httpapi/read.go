package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/enrollgate/enrollgate/internal/apierror"
	"github.com/enrollgate/enrollgate/projections"
)

// ReadModel is what the query routes read: *readstore.Store implements it,
// and so does an adapter that follows the projector's current store.
type ReadModel interface {
	// WaitFor blocks until the read model has applied the stream sequence
	// seq, or ctx ends (its error, wrapped, is returned).
	WaitFor(ctx context.Context, seq uint64) error
	// LastApplied is the last stream sequence applied.
	LastApplied() uint64
	// State is the state document of site at now; false when the site has
	// no events (the document then says status none).
	State(site string, now time.Time) (projections.StateDoc, bool)
	// States are the documents of the sites with events that keep accepts,
	// sorted by site.
	States(now time.Time, keep func(site string) bool) []projections.StateDoc
	// Audit is a page of site's audit trail: at most limit entries with a
	// sequence below before (0: from the newest), newest first, and the
	// before of the next page (0: none).
	Audit(site string, before uint64, limit int) ([]projections.AuditEntry, uint64, error)
	// Attempts are site's most recent attempts, newest first, of the outcome
	// unless it is empty.
	Attempts(site string, outcome projections.Outcome, limit int) ([]projections.AttemptEntry, error)
}

// Page sizes of the list routes.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// query holds the parsed query string of a read. Unknown parameters are
// ignored; a known one given twice, or malformed, is a 400 naming it. An
// empty value means the parameter's default.
type query struct{ v url.Values }

func parseQuery(r *http.Request) (query, error) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return query{}, badRequest("malformed query string")
	}
	return query{v: v}, nil
}

// get returns the value of a known parameter, "" when absent.
func (q query) get(name string) (string, error) {
	vs := q.v[name]
	if len(vs) > 1 {
		return "", badRequest("query parameter %s is given more than once", name)
	}
	if len(vs) == 0 {
		return "", nil
	}
	return vs[0], nil
}

// limit parses ?limit=: 1 to MaxLimit, DefaultLimit when absent.
func (q query) limit() (int, error) {
	s, err := q.get("limit")
	if err != nil || s == "" {
		return DefaultLimit, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, badRequest("query parameter limit must be an integer from 1 to %d", MaxLimit)
	}
	return n, nil
}

// minSeq parses ?min_seq=: a stream sequence, 0 when absent.
func (q query) minSeq() (uint64, error) {
	s, err := q.get("min_seq")
	if err != nil || s == "" {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, badRequest("query parameter min_seq must be a stream sequence (a non-negative integer)")
	}
	return n, nil
}

// Audit cursors are opaque to clients: base64url (no padding) of a version
// byte and the big-endian stream sequence the next page starts below. The
// version lets the format change without old cursors being misread.
const cursorV1 = 1

func encodeCursor(before uint64) string {
	if before == 0 {
		return ""
	}
	var b [9]byte
	b[0] = cursorV1
	binary.BigEndian.PutUint64(b[1:], before)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// cursor parses ?cursor=: 0 (from the newest) when absent.
func (q query) cursor() (uint64, error) {
	s, err := q.get("cursor")
	if err != nil || s == "" {
		return 0, err
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != 9 || b[0] != cursorV1 {
		return 0, badRequest("query parameter cursor is not a cursor this API returned; pass next_cursor unchanged")
	}
	before := binary.BigEndian.Uint64(b[1:])
	if before == 0 {
		return 0, badRequest("query parameter cursor is not a cursor this API returned; pass next_cursor unchanged")
	}
	return before, nil
}

// outcome parses ?outcome=: failed, succeeded, or all when absent.
func (q query) outcome() (projections.Outcome, error) {
	s, err := q.get("outcome")
	if err != nil {
		return "", err
	}
	o, ok := projections.ParseOutcome(s)
	if !ok {
		return "", badRequest("query parameter outcome must be %s, %s, %s or %s", projections.OutcomeFailed,
			projections.OutcomeSucceeded, projections.OutcomeOutdated, projections.OutcomeMistyped)
	}
	return o, nil
}

// startRead parses the query of a read, checks its parameters and waits for
// ?min_seq, so that a client reads its own writes: a write answers with the
// sequence of its event, and a read given it waits (at most MinSeqTimeout)
// until the read model has applied it. Parameters are checked before the
// wait, so that a bad request answers at once.
func (a *API) startRead(w http.ResponseWriter, r *http.Request, check func(q query) error) error {
	q, err := parseQuery(r)
	if err != nil {
		return err
	}
	seq, err := q.minSeq()
	if err != nil {
		return err
	}
	if check != nil {
		if err := check(q); err != nil {
			return err
		}
	}
	// Documents depend on the token's scope and change with every event.
	w.Header().Set("Cache-Control", "no-store")
	if seq == 0 || a.deps.Reads.LastApplied() >= seq {
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.MinSeqTimeout)
	defer cancel()
	err = a.deps.Reads.WaitFor(ctx, seq)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		return &apierror.Error{Class: apierror.Unavailable, Code: apierror.CodeNotCaughtUp,
			Detail: fmt.Sprintf("the read model has not applied seq %d within %s (applied: %d); retry shortly",
				seq, a.cfg.MinSeqTimeout, a.deps.Reads.LastApplied())}
	case r.Context().Err() != nil:
		return fmt.Errorf("wait for min_seq %d: %w", seq, r.Context().Err())
	default:
		// The read model is closing (shutdown or swap): a transient state.
		return &apierror.Error{Class: apierror.Unavailable, Code: apierror.CodeUnavailable,
			Detail: "the read model is not available; retry shortly"}
	}
}
