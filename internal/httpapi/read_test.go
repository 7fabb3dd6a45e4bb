package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/apierror"
	"github.com/enrollgate/enrollgate/internal/auth"
	"github.com/enrollgate/enrollgate/internal/readstore"
	"github.com/enrollgate/enrollgate/projections"
)

// The real read model implements ReadModel.
var _ ReadModel = (*readstore.Store)(nil)

// readNow is the time of the fake clock of the test API.
var readNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// fakeReads is a ReadModel with the documented paging semantics over
// in-memory entries; it records the arguments of its queries.
type fakeReads struct {
	mu       sync.Mutex
	applied  uint64
	changed  chan struct{}
	waiting  chan uint64 // receives the seq of every WaitFor that blocks
	waitErr  error       // when set, WaitFor returns it at once
	states   map[string]projections.StateDoc
	audit    map[string][]projections.AuditEntry   // oldest first
	attempts map[string][]projections.AttemptEntry // oldest first
	calls    []string
	now      []time.Time
}

func newFakeReads() *fakeReads {
	return &fakeReads{changed: make(chan struct{}), waiting: make(chan uint64, 16),
		states: map[string]projections.StateDoc{}, audit: map[string][]projections.AuditEntry{},
		attempts: map[string][]projections.AttemptEntry{}}
}

func (f *fakeReads) record(format string, args ...any) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *fakeReads) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// apply sets what the read model holds after applying seq, and wakes waiters.
func (f *fakeReads) apply(seq uint64, change func(f *fakeReads)) {
	f.mu.Lock()
	if change != nil {
		change(f)
	}
	f.applied = seq
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeReads) WaitFor(ctx context.Context, seq uint64) error {
	announced := false
	for {
		f.mu.Lock()
		applied, ch, werr := f.applied, f.changed, f.waitErr
		f.mu.Unlock()
		if werr != nil {
			return werr
		}
		if applied >= seq {
			return nil
		}
		if !announced {
			announced = true
			select {
			case f.waiting <- seq:
			default:
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for seq %d (applied %d): %w", seq, applied, ctx.Err())
		}
	}
}

func (f *fakeReads) LastApplied() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

func (f *fakeReads) State(site string, now time.Time) (projections.StateDoc, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = append(f.now, now)
	d, ok := f.states[site]
	if !ok {
		return projections.StateDoc{Site: site, Status: domain.StatusNone, MaxFailedAttempts: 10,
			FailureWindow: events.Duration(time.Hour), Mode: events.ModeEnforce}, false
	}
	return d, true
}

func (f *fakeReads) States(now time.Time, keep func(string) bool) []projections.StateDoc {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = append(f.now, now)
	var out []projections.StateDoc
	for site, d := range f.states {
		if keep(site) {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Site < out[j].Site })
	return out
}

func (f *fakeReads) Audit(site string, before uint64, limit int) ([]projections.AuditEntry, uint64, error) {
	f.record("audit %s before=%d limit=%d", site, before, limit)
	f.mu.Lock()
	defer f.mu.Unlock()
	all := f.audit[site]
	var out []projections.AuditEntry
	for i := len(all) - 1; i >= 0; i-- {
		if before != 0 && all[i].Seq >= before {
			continue
		}
		if len(out) == limit {
			return out, out[len(out)-1].Seq, nil
		}
		out = append(out, all[i])
	}
	return out, 0, nil
}

func (f *fakeReads) Attempts(site string, outcome projections.Outcome, limit int) ([]projections.AttemptEntry, error) {
	f.record("attempts %s outcome=%s limit=%d", site, outcome, limit)
	f.mu.Lock()
	defer f.mu.Unlock()
	all := f.attempts[site]
	var out []projections.AttemptEntry
	for i := len(all) - 1; i >= 0 && len(out) < limit; i-- {
		if outcome == "" || all[i].Outcome == outcome {
			out = append(out, all[i])
		}
	}
	return out, nil
}

// seed gives sites acme and beta a state, an audit trail of n events each
// (acme at odd sequences 1, 3, 5…, beta at even ones, as in a shared stream)
// and attempts.
func (f *fakeReads) seed(n int) {
	f.apply(uint64(2*n), func(f *fakeReads) {
		for i, site := range []string{"acme", "beta"} {
			st := projections.StateDocFromDomain(activeState(site, uint64(2*n-1+i)))
			f.states[site] = st
			for k := 0; k < n; k++ {
				seq := uint64(2*k + 1 + i)
				f.audit[site] = append(f.audit[site], projections.AuditEntry{Seq: seq, ID: fmt.Sprintf("ev-%s-%d", site, seq),
					Type: events.TypeEnrollmentAttemptFailed, At: genAt.UTC().Add(time.Duration(seq) * time.Second),
					Actor: events.Actor{Kind: events.ActorDevice}, Summary: fmt.Sprintf("event %d", seq),
					Details: json.RawMessage(`{"n":` + fmt.Sprint(seq) + `}`)})
				outcome := projections.OutcomeFailed
				if k%3 == 2 {
					outcome = projections.OutcomeSucceeded
				}
				f.attempts[site] = append(f.attempts[site], projections.AttemptEntry{Seq: seq, At: genAt.UTC(), Outcome: outcome,
					PasscodeID: "01JPASSCODE", Source: events.Source{IP: fmt.Sprintf("192.0.2.%d", seq), DeviceID: "dev", Platform: "ios"}})
			}
		}
	})
}

func TestReadAuthAndScope(t *testing.T) {
	e := newEnv(t, &fakeCommands{})
	e.reads.seed(3)
	auditorAcme, err := e.tokens.Add(auth.Principal{ID: "auditor-acme", Role: auth.RoleAuditor, Sites: []string{"acme"}})
	if err != nil {
		t.Fatal(err)
	}
	reads := []string{"/v1/sites/%s/passcode", "/v1/sites/%s/audit", "/v1/sites/%s/attempts"}
	for _, p := range reads {
		for _, tok := range []string{e.admin, e.auditor, auditorAcme, e.adminAcme} {
			if r := e.do(t, "GET", fmt.Sprintf(p, "acme"), tok, nil); r.status != 200 {
				t.Fatalf("GET %s: %d %s", fmt.Sprintf(p, "acme"), r.status, r.body)
			}
		}
		// Out of scope: 404, the same answer as a site that does not exist.
		unknown := wantProblem(t, e.do(t, "GET", "/v1/nothing-here", auditorAcme, nil), 404, apierror.CodeNotFound)
		for _, tok := range []string{auditorAcme, e.adminAcme} {
			m := wantProblem(t, e.do(t, "GET", fmt.Sprintf(p, "beta"), tok, nil), 404, apierror.CodeNotFound)
			if m["detail"] != unknown["detail"] {
				t.Errorf("out-of-scope and unknown differ: %v vs %v", m, unknown)
			}
		}
		// Enrollment tokens read nothing; no token is 401, even for a bad site.
		wantProblem(t, e.do(t, "GET", fmt.Sprintf(p, "acme"), e.enroll, nil), 403, apierror.CodeForbidden)
		wantProblem(t, e.do(t, "GET", fmt.Sprintf(p, "acme"), "", nil), 401, apierror.CodeUnauthorized)
		wantProblem(t, e.do(t, "GET", fmt.Sprintf(p, "NOPE"), "", nil), 401, apierror.CodeUnauthorized)
		wantProblem(t, e.do(t, "GET", fmt.Sprintf(p, "NOPE"), e.auditor, nil), 400, apierror.CodeInvalidRequest)
	}
	// An auditor may not write.
	wantProblem(t, e.do(t, "POST", "/v1/sites/acme/passcode", auditorAcme, nil), 403, apierror.CodeForbidden)
	wantProblem(t, e.do(t, "POST", "/v1/sites/beta/passcode", auditorAcme, nil), 404, apierror.CodeNotFound)

	// GET /v1/sites lists only the visible sites.
	sites := func(tok string) []string {
		r := e.do(t, "GET", "/v1/sites", tok, nil)
		if r.status != 200 {
			t.Fatalf("GET /v1/sites: %d %s", r.status, r.body)
		}
		var resp SitesResponse
		if err := json.Unmarshal(r.body, &resp); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range resp.Sites {
			out = append(out, d.Site)
		}
		return out
	}
	if got := sites(e.auditor); !reflect.DeepEqual(got, []string{"acme", "beta"}) {
		t.Errorf("auditor of all sites sees %v", got)
	}
	if got := sites(auditorAcme); !reflect.DeepEqual(got, []string{"acme"}) {
		t.Errorf("auditor of acme sees %v", got)
	}
	gamma, err := e.tokens.Add(auth.Principal{ID: "auditor-gamma", Role: auth.RoleAuditor, Sites: []string{"gamma"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := e.do(t, "GET", "/v1/sites", gamma, nil); r.status != 200 || string(r.body) != `{"sites":[]}`+"\n" {
		t.Errorf("no visible site: %d %s", r.status, r.body)
	}
	wantProblem(t, e.do(t, "GET", "/v1/sites", e.enroll, nil), 403, apierror.CodeForbidden)
	wantProblem(t, e.do(t, "GET", "/v1/sites", "", nil), 401, apierror.CodeUnauthorized)
	wantProblem(t, e.do(t, "POST", "/v1/sites", e.admin, nil), 405, apierror.CodeMethodNotAllowed)
}

func TestGetPasscode(t *testing.T) {
	f := &fakeCommands{}
	e := newEnv(t, f)
	// Nothing generated: 200 with status none.
	r := e.do(t, "GET", "/v1/sites/acme/passcode", e.auditor, nil)
	if r.status != 200 || r.json(t)["status"] != "none" || r.json(t)["site"] != "acme" {
		t.Fatalf("no passcode: %d %s", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", r.header)
	}
	// The read document has the write response's shape: both are
	// projections.StateDoc.
	gen := e.do(t, "POST", "/v1/sites/acme/passcode", e.admin, nil)
	var written struct {
		State json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(gen.body, &written); err != nil {
		t.Fatal(err)
	}
	e.reads.apply(7, func(fr *fakeReads) { fr.states["acme"] = projections.StateDocFromDomain(activeState("acme", 7)) })
	r = e.do(t, "GET", "/v1/sites/acme/passcode?min_seq=7", e.auditor, nil)
	if r.status != 200 || strings.TrimSpace(string(r.body)) != string(written.State) {
		t.Fatalf("read differs from the write's state:\nread  %s\nwrite %s", r.body, written.State)
	}
	// The clock of Deps dates the document.
	e.reads.mu.Lock()
	nows := append([]time.Time(nil), e.reads.now...)
	e.reads.mu.Unlock()
	if len(nows) == 0 || !nows[len(nows)-1].Equal(readNow) {
		t.Fatalf("state read at %v, want %v", nows, readNow)
	}
}

func TestAuditPaging(t *testing.T) {
	e := newEnv(t, &fakeCommands{})
	e.reads.seed(7) // acme: seqs 1, 3, …, 13
	var seqs []float64
	cursor := ""
	pages := 0
	for {
		path := "/v1/sites/acme/audit?limit=2"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		r := e.do(t, "GET", path, e.auditor, nil)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		m := r.json(t)
		entries := m["entries"].([]any)
		pages++
		for _, en := range entries {
			em := en.(map[string]any)
			for _, k := range []string{"seq", "id", "type", "at", "actor", "summary", "details"} {
				if _, ok := em[k]; !ok {
					t.Fatalf("entry without %s: %v", k, em)
				}
			}
			seqs = append(seqs, em["seq"].(float64))
		}
		next, has := m["next_cursor"].(string)
		if !has {
			if len(entries) != 1 {
				t.Fatalf("last page has %d entries, want 1", len(entries))
			}
			break
		}
		if len(entries) != 2 || next == "" || pages > 10 {
			t.Fatalf("page %d: %s", pages, r.body)
		}
		if _, err := decodeCursorBytes(next); err != nil {
			t.Fatalf("cursor %q is not base64url: %v", next, err)
		}
		cursor = next
	}
	want := []float64{13, 11, 9, 7, 5, 3, 1}
	if !reflect.DeepEqual(seqs, want) || pages != 4 {
		t.Fatalf("paged seqs %v in %d pages, want %v in 4", seqs, pages, want)
	}
	// Defaults and bounds reach the read model.
	e.do(t, "GET", "/v1/sites/acme/audit", e.auditor, nil)
	e.do(t, "GET", "/v1/sites/acme/audit?limit=500&ignored=1", e.auditor, nil)
	calls := e.reads.Calls()
	if got := calls[len(calls)-2:]; !reflect.DeepEqual(got, []string{"audit acme before=0 limit=50", "audit acme before=0 limit=500"}) {
		t.Fatalf("calls %v", got)
	}
	// An empty trail is an empty list, not null, and no cursor.
	if r := e.do(t, "GET", "/v1/sites/gamma/audit", e.auditor, nil); r.status != 200 || string(r.body) != `{"entries":[]}`+"\n" {
		t.Fatalf("empty trail: %d %s", r.status, r.body)
	}
}

func decodeCursorBytes(cursor string) ([]byte, error) {
	return base64.RawURLEncoding.Strict().DecodeString(cursor)
}

func TestAttempts(t *testing.T) {
	e := newEnv(t, &fakeCommands{})
	e.reads.seed(6)
	r := e.do(t, "GET", "/v1/sites/acme/attempts?outcome=failed&limit=3", e.auditor, nil)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var resp struct {
		Attempts []map[string]any `json:"attempts"`
	}
	if err := json.Unmarshal(r.body, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Attempts) != 3 {
		t.Fatalf("%d attempts: %s", len(resp.Attempts), r.body)
	}
	prev := 1e9
	for _, a := range resp.Attempts {
		src := a["source"].(map[string]any)
		if a["outcome"] != "failed" || src["ip"] == "" || src["device_id"] != "dev" || src["platform"] != "ios" {
			t.Fatalf("attempt %v", a)
		}
		if s := a["seq"].(float64); s >= prev {
			t.Fatalf("not newest first: %s", r.body)
		} else {
			prev = s
		}
	}
	e.do(t, "GET", "/v1/sites/acme/attempts", e.auditor, nil)
	e.do(t, "GET", "/v1/sites/acme/attempts?outcome=succeeded", e.auditor, nil)
	calls := e.reads.Calls()
	want := []string{"attempts acme outcome=failed limit=3", "attempts acme outcome= limit=50", "attempts acme outcome=succeeded limit=50"}
	if got := calls[len(calls)-3:]; !reflect.DeepEqual(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	if r := e.do(t, "GET", "/v1/sites/gamma/attempts", e.auditor, nil); r.status != 200 || string(r.body) != `{"attempts":[]}`+"\n" {
		t.Fatalf("no attempts: %d %s", r.status, r.body)
	}
}

func TestReadBadParameters(t *testing.T) {
	e := newEnv(t, &fakeCommands{})
	e.reads.seed(2)
	cur := func(b ...byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	for _, c := range []struct{ path, names string }{
		{"/v1/sites/acme/audit?limit=abc", "limit"},
		{"/v1/sites/acme/audit?limit=0", "limit"},
		{"/v1/sites/acme/audit?limit=-1", "limit"},
		{"/v1/sites/acme/audit?limit=501", "limit"},
		{"/v1/sites/acme/audit?limit=1.5", "limit"},
		{"/v1/sites/acme/audit?limit=99999999999999999999", "limit"},
		{"/v1/sites/acme/audit?limit=2&limit=3", "limit"},
		{"/v1/sites/acme/audit?cursor=%21%21", "cursor"},
		{"/v1/sites/acme/audit?cursor=13", "cursor"},
		{"/v1/sites/acme/audit?cursor=" + cur(2, 0, 0, 0, 0, 0, 0, 0, 5), "cursor"},
		{"/v1/sites/acme/audit?cursor=" + cur(1, 0, 0, 0, 0, 0, 0, 0, 0), "cursor"},
		{"/v1/sites/acme/audit?cursor=" + cur(1, 0, 0, 0, 5), "cursor"},
		{"/v1/sites/acme/audit?cursor=" + cur(1, 0, 0, 0, 0, 0, 0, 0, 5) + "%3D", "cursor"},
		{"/v1/sites/acme/attempts?outcome=FAILED", "outcome"},
		{"/v1/sites/acme/attempts?outcome=locked", "outcome"},
		{"/v1/sites/acme/attempts?limit=x", "limit"},
		{"/v1/sites/acme/attempts?limit=600", "limit"},
		{"/v1/sites/acme/passcode?min_seq=-1", "min_seq"},
		{"/v1/sites/acme/passcode?min_seq=abc", "min_seq"},
		{"/v1/sites/acme/passcode?min_seq=1e3", "min_seq"},
		{"/v1/sites/acme/audit?min_seq=1&min_seq=2", "min_seq"},
		{"/v1/sites/acme/attempts?min_seq=0x10", "min_seq"},
		{"/v1/sites?min_seq=x", "min_seq"},
		{"/v1/sites/acme/audit?limit=%zz", "query string"},
	} {
		t.Run(c.path, func(t *testing.T) {
			m := wantProblem(t, e.do(t, "GET", c.path, e.auditor, nil), 400, apierror.CodeInvalidRequest)
			if d := m["detail"].(string); !strings.Contains(d, c.names) {
				t.Errorf("detail %q does not name %s", d, c.names)
			}
		})
	}
	if calls := e.reads.Calls(); len(calls) != 0 {
		t.Fatalf("bad requests reached the read model: %v", calls)
	}
	// Empty values take the defaults; unknown parameters are ignored.
	for _, p := range []string{"/v1/sites/acme/audit?limit=&cursor=&min_seq=&x=y", "/v1/sites/acme/attempts?outcome=&limit="} {
		if r := e.do(t, "GET", p, e.auditor, nil); r.status != 200 {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}
}

func TestMinSeq(t *testing.T) {
	e := newEnv(t, &fakeCommands{}, func(c *Config, _ *Deps) { c.MinSeqTimeout = 150 * time.Millisecond })
	e.reads.seed(3) // applied 6

	// Already applied: no wait.
	for _, p := range []string{"/v1/sites/acme/passcode?min_seq=6", "/v1/sites/acme/audit?min_seq=1", "/v1/sites?min_seq=0"} {
		if r := e.do(t, "GET", p, e.auditor, nil); r.status != 200 {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}

	e.reads.mu.Lock()
	e.reads.calls = nil
	e.reads.mu.Unlock()

	// Not applied within the bound: 503 not_caught_up with Retry-After.
	start := time.Now()
	r := e.do(t, "GET", "/v1/sites/acme/audit?min_seq=9", e.auditor, nil)
	m := wantProblem(t, r, 503, apierror.CodeNotCaughtUp)
	if el := time.Since(start); el < 150*time.Millisecond || el > 5*time.Second {
		t.Fatalf("answered after %s, want after the 150ms bound", el)
	}
	if d := m["detail"].(string); !strings.Contains(d, "seq 9") || !strings.Contains(d, "applied: 6") {
		t.Fatalf("detail %q", d)
	}
	if r.header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	for _, p := range []string{"/v1/sites?min_seq=7", "/v1/sites/acme/passcode?min_seq=7", "/v1/sites/acme/attempts?min_seq=7"} {
		wantProblem(t, e.do(t, "GET", p, e.auditor, nil), 503, apierror.CodeNotCaughtUp)
	}
	if calls := e.reads.Calls(); len(calls) != 0 {
		t.Fatalf("a read that timed out queried the read model: %v", calls)
	}

	// Applied while the read waits: the answer shows the new state.
	e2 := newEnv(t, &fakeCommands{}, func(c *Config, _ *Deps) { c.MinSeqTimeout = 5 * time.Second })
	e2.reads.seed(3)
	go func() {
		<-e2.reads.waiting
		e2.reads.apply(8, func(f *fakeReads) {
			st := f.states["acme"]
			st.Status, st.Seq = domain.StatusDisabled, 8
			f.states["acme"] = st
		})
	}()
	r = e2.do(t, "GET", "/v1/sites/acme/passcode?min_seq=8", e2.auditor, nil)
	if r.status != 200 || r.json(t)["status"] != "disabled" || r.json(t)["seq"] != float64(8) {
		t.Fatalf("after the wait: %d %s", r.status, r.body)
	}

	// A read model that is closing: 503 unavailable, not a 500.
	e2.reads.mu.Lock()
	e2.reads.waitErr = errors.New("read store closed")
	e2.reads.mu.Unlock()
	wantProblem(t, e2.do(t, "GET", "/v1/sites/acme/passcode?min_seq=99", e2.auditor, nil), 503, apierror.CodeUnavailable)
}

// A read that waits for min_seq gives up with its request when the client
// goes away; the API keeps serving.
func TestMinSeqClientGone(t *testing.T) {
	e := newEnv(t, &fakeCommands{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/sites/acme/passcode?min_seq=5", nil)
	req.Header.Set("Authorization", "Bearer "+e.auditor)
	done := make(chan error, 1)
	go func() {
		resp, err := e.srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-e.reads.waiting
	cancel()
	if err := <-done; err == nil {
		t.Fatal("request succeeded after cancel")
	}
	if r := e.do(t, "GET", "/v1/sites/acme/passcode", e.auditor, nil); r.status != 200 {
		t.Fatalf("after a cancelled wait: %d %s", r.status, r.body)
	}
}
