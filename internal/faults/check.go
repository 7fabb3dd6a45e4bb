package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/alerts"
)

// lockout is a lockout a scenario caused: its generation must end with
// exactly Threshold stored failures, one PasscodeDisabled and one alert,
// the alert within allowed of the last failure.
type lockout struct {
	site, passcodeID string
	allowed          time.Duration
	why              string // what the bound is relative to, for the report
}

// round is one scenario's run: what it did, for the checks.
type round struct {
	name     string
	tr       *tracker
	load     *load
	loadSite []string // sites that must never be disabled
	sites    []string // every site the scenario touched
	lockouts []*lockout
	faultAt  time.Time // when the fault was injected (zero: none)
	healedAt time.Time // when the fault was over (nodes or replicas started again)
	notes    []string
	failed   bool
}

func (r *round) fail(format string, args ...any) {
	r.failed = true
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *round) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// rawMsg is a stored message as the checks need it.
type rawMsg struct {
	subject string
	seq     uint64
	at      time.Time
	msgID   string
	data    []byte
}

// read returns the messages of stream on subjects, in order, as the
// service user sees them.
func (s *Suite) read(ctx context.Context, stream string, subjects []string) ([]rawMsg, error) {
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	var present []string
	for _, subj := range subjects {
		_, err := st.GetLastMsgForSubject(ctx, subj)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			continue // an empty subject would make a fetch wait its whole timeout
		case err != nil:
			return nil, fmt.Errorf("last message on %s: %w", subj, err)
		}
		present = append(present, subj)
	}
	if len(present) == 0 {
		return nil, nil
	}
	oc, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: present})
	if err != nil {
		return nil, err
	}
	var out []rawMsg
	for {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		batch, err := oc.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		var pending uint64 = 1
		n := 0
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			out = append(out, rawMsg{subject: m.Subject(), seq: meta.Sequence.Stream, at: meta.Timestamp,
				msgID: m.Headers().Get(nats.MsgIdHdr), data: m.Data()})
			pending = meta.NumPending
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if pending == 0 || n == 0 {
			return out, nil
		}
	}
}

// readRetry is read, tried again for a while: the JetStream API of a
// cluster that has just healed may not answer at once.
func (s *Suite) readRetry(ctx context.Context, stream string, subjects []string) ([]rawMsg, error) {
	var msgs []rawMsg
	err := poll(ctx, 60*time.Second, func() (err error) {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		msgs, err = s.read(rctx, stream, subjects)
		return err
	})
	return msgs, err
}

// quiescent waits until the lockout saga and the alert publisher have
// handled every event: after that no disable or alert is still to come.
func (s *Suite) quiescent(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var busy []string
		for _, durable := range []string{handlers.LockoutSagaDurable, alerts.Durable} {
			c, err := s.js.Consumer(ctx, events.StreamName, durable)
			if err != nil {
				busy = append(busy, fmt.Sprintf("%s: %v", durable, err))
				continue
			}
			info, err := c.Info(ctx)
			if err != nil {
				busy = append(busy, fmt.Sprintf("%s: %v", durable, err))
				continue
			}
			if info.NumPending > 0 || info.NumAckPending > 0 {
				busy = append(busy, fmt.Sprintf("%s: %d pending, %d unacknowledged", durable, info.NumPending, info.NumAckPending))
			}
		}
		if len(busy) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %s", timeout, strings.Join(busy, "; "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// check runs every check of a finished round into res.
func (s *Suite) check(ctx context.Context, r *round, res *Result) {
	if err := s.waitAllReady(ctx, 120*time.Second); err != nil {
		r.fail("replicas not ready: %v", err)
	}
	for _, rep := range s.Replicas {
		for _, e := range rep.TakeExits() {
			r.fail("%s", e)
		}
	}
	if err := s.quiescent(ctx, 120*time.Second); err != nil {
		r.fail("saga and alert publisher not done: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	var subjects []string
	for _, site := range r.sites {
		subjects = append(subjects, events.Subject(events.Site(site)))
	}
	acked := r.tr.snapshot()
	res.Acknowledged = len(acked)
	if r.load != nil {
		res.Unavailability, _ = unavailability(acked, r.load.start, r.load.end)
	}
	for e, n := range s.takeEdgeErrors() {
		r.note("%d× %s", n, e)
	}
	msgs, err := s.readRetry(ctx, events.StreamName, subjects)
	if err != nil {
		r.fail("read %s: %v", events.StreamName, err)
		return
	}
	type gen struct {
		failures int
		nth      time.Time // when the failure that reached the threshold was stored
		disables int
	}
	gens := map[string]*gen{}
	g := func(id string) *gen {
		if gens[id] == nil {
			gens[id] = &gen{}
		}
		return gens[id]
	}
	msgIDs := map[string]int{}
	attempts := map[string][]events.Type{}
	attemptAt := map[string][]rawMsg{} // where each attempt's events are
	lastSeq := map[string]uint64{}
	loadSites := map[string]bool{}
	for _, site := range r.loadSite {
		loadSites[site] = true
	}
	for _, m := range msgs {
		msgIDs[m.msgID]++
		site := strings.TrimPrefix(m.subject, events.SubjectPrefix)
		lastSeq[site] = max(lastSeq[site], m.seq)
		e, err := events.Decode(m.data)
		if err != nil {
			r.fail("stored message %d does not decode: %v", m.seq, err)
			continue
		}
		switch d := e.Data.(type) {
		case events.EnrollmentAttemptFailed:
			attempts[d.AttemptID] = append(attempts[d.AttemptID], e.Type())
			attemptAt[d.AttemptID] = append(attemptAt[d.AttemptID], m)
			gg := g(d.PasscodeID)
			gg.failures++
			if d.ReachesThreshold() && gg.nth.IsZero() {
				gg.nth = m.at
			}
		case events.EnrollmentAttemptSucceeded:
			attempts[d.AttemptID] = append(attempts[d.AttemptID], e.Type())
			attemptAt[d.AttemptID] = append(attemptAt[d.AttemptID], m)
		case events.PasscodeDisabled:
			if loadSites[site] {
				r.fail("load site %s was disabled (%s)", site, d.Reason)
			}
			if d.Reason == events.DisableLockout {
				g(d.PasscodeID).disables++
			}
		}
	}
	var dupEvents, dupAttempts []string
	for id, n := range msgIDs {
		if n > 1 {
			res.Duplicates += n - 1
			dupEvents = append(dupEvents, fmt.Sprintf("%s (%d times)", id, n))
		}
	}
	for id, types := range attempts {
		if id != "" && len(types) > 1 {
			res.Duplicates += len(types) - 1
			at := attemptAt[id]
			dupAttempts = append(dupAttempts, fmt.Sprintf("%s as %s at seq %d and %d, %s apart", id, types[0], at[0].seq, at[len(at)-1].seq,
				fmtDuration(at[len(at)-1].at.Sub(at[0].at))))
		}
	}
	if len(dupEvents) > 0 {
		slices.Sort(dupEvents)
		r.fail("%d events stored more than once, e.g. %s", len(dupEvents), strings.Join(dupEvents[:min(3, len(dupEvents))], "; "))
	}
	if len(dupAttempts) > 0 {
		slices.Sort(dupAttempts)
		r.fail("%d attempts (the same attempt_id and passcode) stored more than once, e.g. %s", len(dupAttempts), strings.Join(dupAttempts[:min(3, len(dupAttempts))], "; "))
	}

	var lost []string
	for _, v := range acked {
		want := events.TypeEnrollmentAttemptFailed
		if v.ok {
			want = events.TypeEnrollmentAttemptSucceeded
		}
		if !hasType(attempts[v.a.ID], want) {
			lost = append(lost, v.a.ID+" via "+v.via)
		}
	}
	res.Lost = len(lost)
	if len(lost) > 0 {
		r.fail("%d acknowledged verdicts not stored, e.g. %s", len(lost), strings.Join(lost[:min(3, len(lost))], ", "))
	}

	// Alerts.
	var alertSubjects []string
	for _, lo := range r.lockouts {
		alertSubjects = append(alertSubjects, alerts.Subject(lo.site, "passcode_lockout"))
	}
	alertMsgs, err := s.readRetry(ctx, alerts.StreamName, alertSubjects)
	if err != nil {
		r.fail("read %s: %v", alerts.StreamName, err)
	}
	alertsOf := map[string][]time.Time{}
	for _, m := range alertMsgs {
		var ce alerts.CloudEvent[alerts.LockoutData]
		if err := json.Unmarshal(m.data, &ce); err != nil {
			r.fail("alert %d does not decode: %v", m.seq, err)
			continue
		}
		alertsOf[ce.Data.PasscodeID] = append(alertsOf[ce.Data.PasscodeID], m.at)
	}
	res.Lockouts = len(r.lockouts)
	for _, lo := range r.lockouts {
		gg := g(lo.passcodeID)
		al := alertsOf[lo.passcodeID]
		ok := true
		if gg.failures != s.cfg.Threshold {
			ok = false
			r.fail("%s: %d failures stored, want %d", lo.site, gg.failures, s.cfg.Threshold)
		}
		if gg.disables != 1 {
			ok = false
			r.fail("%s: %d lockout disables, want 1", lo.site, gg.disables)
		}
		if len(al) != 1 {
			ok = false
			r.fail("%s: %d lockout alerts, want 1", lo.site, len(al))
		}
		if ok {
			res.LockoutsOK++
		}
		if len(al) > 0 && !gg.nth.IsZero() {
			d := al[0].Sub(gg.nth)
			res.AlertDelay = max(res.AlertDelay, d)
			if d > lo.allowed {
				r.fail("%s: alert %s after the last failure, allowed %s (%s)", lo.site, fmtDuration(d), fmtDuration(lo.allowed), lo.why)
			}
		}
	}

	// The read models agree with each other and with the stream.
	for _, site := range r.sites {
		s.converged(ctx, r, site, lastSeq[site])
	}

	if r.load != nil && !r.healedAt.IsZero() && r.tr.ackedSince(r.healedAt) == 0 {
		r.fail("no verdict after the fault was over")
	}
	r.tr.mu.Lock()
	for reason, n := range r.tr.refused {
		if reason != "disabled" || len(r.lockouts) == 0 {
			r.note("%d verdicts %q", n, reason)
		}
	}
	for msg, n := range r.tr.errors {
		r.fail("%d× %s", n, msg)
	}
	r.tr.mu.Unlock()
}

func hasType(types []events.Type, t events.Type) bool {
	for _, x := range types {
		if x == t {
			return true
		}
	}
	return false
}

// converged checks that every replica's state document of site, read once
// its read model has applied the site's last event, is the same.
func (s *Suite) converged(ctx context.Context, r *round, site string, seq uint64) {
	var first map[string]any
	for i, rep := range s.Replicas {
		var doc map[string]any
		deadline := time.Now().Add(30 * time.Second)
		for {
			doc = nil
			code, err := s.do(ctx, i, http.MethodGet, fmt.Sprintf("/v1/sites/%s/passcode?min_seq=%d", site, seq), s.adminToken, nil, &doc)
			if err == nil && code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				r.fail("%s: %s did not answer its state at min_seq %d: %d %v", site, rep.Name, seq, code, err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		delete(doc, "throttled_sources") // relative to the time of the read
		if got, _ := doc["seq"].(float64); uint64(got) != seq {
			r.fail("%s: %s's state is at seq %v, the stream at %d", site, rep.Name, doc["seq"], seq)
		}
		if first == nil {
			first = doc
			continue
		}
		if !reflect.DeepEqual(first, doc) {
			a, _ := json.Marshal(first)
			b, _ := json.Marshal(doc)
			r.fail("%s: %s and %s disagree: %s vs %s", site, s.Replicas[0].Name, rep.Name, a, b)
		}
	}
}
