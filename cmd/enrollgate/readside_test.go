package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/apierror"
	"github.com/enrollgate/enrollgate/internal/consume"
	"github.com/enrollgate/enrollgate/internal/natstest"
	"github.com/enrollgate/enrollgate/internal/projector"
)

// raw sends a request without a body and returns the answer undecoded.
func (in *instance) raw(method, path, token string) (int, http.Header, []byte) {
	in.t.Helper()
	req, err := http.NewRequest(method, "http://"+in.httpAddr+path, nil)
	if err != nil {
		in.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		in.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// get reads path and fails the test unless it answers 200.
func (in *instance) get(path, token string) []byte {
	in.t.Helper()
	code, _, b := in.raw("GET", path, token)
	if code != http.StatusOK {
		in.t.Fatalf("GET %s: status %d: %s", path, code, b)
	}
	return b
}

// wantStatus checks the status and, for a problem, its code.
func (in *instance) wantStatus(method, path, token string, status int, code string) {
	in.t.Helper()
	got, _, b := in.raw(method, path, token)
	if got != status {
		in.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, status, b)
	}
	if code != "" {
		var p struct {
			Code string `json:"code"`
		}
		if err := json.Unmarshal(b, &p); err != nil || p.Code != code {
			in.t.Fatalf("%s %s: code %q, want %q: %s", method, path, p.Code, code, b)
		}
	}
}

// addTokenCmd runs `enrollgate tokens add` against in's token API with the
// admin token in $ENROLLGATE_TOKEN, and returns the token it printed.
func addTokenCmd(t *testing.T, in *instance, admin, role, id string, sites ...string) string {
	t.Helper()
	args := []string{"tokens", "add", "--url", "http://" + in.httpAddr, "--role", role, "--id", id}
	for _, s := range sites {
		args = append(args, "--site", s)
	}
	out := runCmd(t, admin, args...)
	token := tokenPattern.FindString(out)
	if token == "" || strings.TrimSpace(out) != token {
		t.Fatalf("tokens add printed %q, want the token alone", out)
	}
	return token
}

type auditEntry struct {
	Seq     uint64          `json:"seq"`
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	At      time.Time       `json:"at"`
	Actor   events.Actor    `json:"actor"`
	Summary string          `json:"summary"`
	Details json.RawMessage `json:"details"`
}

type auditPage struct {
	Entries    []auditEntry `json:"entries"`
	NextCursor *string      `json:"next_cursor"`
}

type attemptEntry struct {
	Seq     uint64        `json:"seq"`
	Outcome string        `json:"outcome"`
	Source  events.Source `json:"source"`
}

type readState struct {
	Site           string `json:"site"`
	Status         string `json:"status"`
	PasscodeID     string `json:"passcode_id"`
	GeneratedBy    string `json:"generated_by"`
	FailedAttempts int    `json:"failed_attempts"`
	DisabledBy     string `json:"disabled_by"`
	DisabledReason string `json:"disabled_reason"`
	Seq            uint64 `json:"seq"`
}

// siteEvents returns the stream sequence and ID of every stored event of
// site, oldest first.
func siteEvents(t *testing.T, natsURL, site string) (seqs []uint64, ids []string) {
	t.Helper()
	for _, m := range storedMessages(t, natsURL) {
		if m.Subject != events.Subject(events.Site(site)) {
			continue
		}
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatalf("event %d: %v", m.Sequence, err)
		}
		seqs, ids = append(seqs, m.Sequence), append(ids, e.ID)
	}
	return seqs, ids
}

// TestReadSideEndToEnd: generate, 3 wrong attempts and a right one over NATS,
// reveal, disable; then the reads (with min_seq) show the state, the audit
// trail page by page, the attempts with their sources, under the scope
// rules; and after a restart on the same data dir the reads are the same.
func TestReadSideEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	in := startInstance(t, dataDir)
	admin := readAdminToken(t, dataDir) // recorded as admin@localhost
	auditor := addTokenCmd(t, in, admin, "auditor", "auditor@acme.example", "acme")

	var gen struct {
		Passcode string          `json:"passcode"`
		State    json.RawMessage `json:"state"`
		Seq      uint64          `json:"seq"`
	}
	if code, _ := in.do("POST", "/v1/sites/acme/passcode", admin, nil, &gen); code != http.StatusCreated {
		t.Fatalf("generate: %d", code)
	}
	if code, _ := in.do("POST", "/v1/sites/beta/passcode", admin, nil, nil); code != http.StatusCreated {
		t.Fatalf("generate beta: %d", code)
	}
	wrong := domain.Guess(0, gen.Passcode) // passes the check: a guess, not a typo
	if wrong == gen.Passcode {
		wrong = domain.Guess(1, gen.Passcode)
	}
	nc, err := nats.Connect(in.natsURL, nats.Token(admin))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	platforms := []string{"ios", "android", "macos"}
	for i := 1; i <= 3; i++ {
		src := map[string]any{"ip": fmt.Sprintf("192.0.2.1%d", i), "device_id": fmt.Sprintf("dev-%d", i), "platform": platforms[i-1]}
		if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": wrong, "source": src}); v.OK || v.Reason != "wrong_passcode" {
			t.Fatalf("wrong attempt %d: %+v", i, v)
		}
	}
	okSrc := map[string]any{"ip": "198.51.100.7", "device_id": "dev-ok", "platform": "ios"}
	if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": gen.Passcode, "attempt_id": "a-ok", "source": okSrc}); !v.OK {
		t.Fatalf("right attempt: %+v", v)
	}
	if code, _ := in.do("POST", "/v1/sites/acme/passcode/reveal", admin, nil, nil); code != http.StatusOK {
		t.Fatalf("reveal: %d", code)
	}
	var dis struct {
		State json.RawMessage `json:"state"`
		Seq   uint64          `json:"seq"`
	}
	if code, _ := in.do("POST", "/v1/sites/acme/passcode/disable", admin, nil, &dis); code != http.StatusOK || dis.Seq == 0 {
		t.Fatalf("disable: %d seq %d", code, dis.Seq)
	}
	minSeq := "?min_seq=" + strconv.FormatUint(dis.Seq, 10)

	// The state, read right after the write.
	body := in.get("/v1/sites/acme/passcode"+minSeq, admin)
	var st readState
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Status != "disabled" || st.FailedAttempts != 3 || st.GeneratedBy != "admin@localhost" ||
		st.DisabledReason != "manual" || st.DisabledBy != "admin@localhost" || st.Seq != dis.Seq || st.Site != "acme" {
		t.Fatalf("state after disable: %s", body)
	}
	// One document type: the write answered exactly what the read shows.
	if got := bytes.TrimSpace(body); !bytes.Equal(got, dis.State) {
		t.Fatalf("read and write documents differ:\nread  %s\nwrite %s", got, dis.State)
	}
	if bytes.Contains(body, []byte(gen.Passcode)) {
		t.Fatal("the state document holds the passcode")
	}

	// The audit trail, page by page with limit=2.
	var entries []auditEntry
	cursor, pages := "", 0
	for {
		path := "/v1/sites/acme/audit" + minSeq + "&limit=2"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var page auditPage
		if err := json.Unmarshal(in.get(path, auditor), &page); err != nil {
			t.Fatal(err)
		}
		pages++
		entries = append(entries, page.Entries...)
		if page.NextCursor == nil {
			break
		}
		if len(page.Entries) != 2 || *page.NextCursor == "" || pages > 10 {
			t.Fatalf("page %d: %d entries, cursor %v", pages, len(page.Entries), page.NextCursor)
		}
		cursor = *page.NextCursor
	}
	seqs, ids := siteEvents(t, in.natsURL, "acme")
	if len(entries) != 7 || len(seqs) != 7 || pages != 4 {
		t.Fatalf("%d audit entries in %d pages, %d stored events; want 7 in 4", len(entries), pages, len(seqs))
	}
	wantTypes := []string{"PasscodeGenerated", "EnrollmentAttemptFailed", "EnrollmentAttemptFailed",
		"EnrollmentAttemptFailed", "EnrollmentAttemptSucceeded", "PasscodeRevealed", "PasscodeDisabled"}
	for i, e := range entries {
		j := len(entries) - 1 - i // entries are newest first
		if e.Seq != seqs[j] || e.ID != ids[j] || e.Type != wantTypes[j] {
			t.Errorf("entry %d: seq %d id %s type %s, want seq %d id %s type %s", i, e.Seq, e.ID, e.Type, seqs[j], ids[j], wantTypes[j])
		}
		if e.Summary == "" || e.At.IsZero() || len(e.Details) == 0 || e.Details[0] != '{' {
			t.Errorf("entry %d incomplete: %+v", i, e)
		}
		if bytes.Contains(e.Details, []byte(gen.Passcode)) {
			t.Errorf("entry %d details hold the passcode", i)
		}
		switch e.Type {
		case "PasscodeGenerated", "PasscodeRevealed", "PasscodeDisabled":
			if e.Actor.ID != "admin@localhost" || !strings.Contains(e.Summary, "admin@localhost") {
				t.Errorf("entry %d: actor %+v summary %q", i, e.Actor, e.Summary)
			}
		case "EnrollmentAttemptFailed":
			ip := fmt.Sprintf("192.0.2.1%d", j)
			if !strings.Contains(e.Summary, ip) || !strings.Contains(string(e.Details), ip) {
				t.Errorf("entry %d: summary %q details %s, want source %s", i, e.Summary, e.Details, ip)
			}
		case "EnrollmentAttemptSucceeded":
			if !strings.Contains(e.Summary, "198.51.100.7") {
				t.Errorf("entry %d: summary %q", i, e.Summary)
			}
		}
	}
	t.Logf("audit summaries, newest first: %q", func() []string {
		var s []string
		for _, e := range entries {
			s = append(s, e.Summary)
		}
		return s
	}())

	// The attempts, with their sources, newest first.
	var att struct {
		Attempts []attemptEntry `json:"attempts"`
	}
	if err := json.Unmarshal(in.get("/v1/sites/acme/attempts"+minSeq, auditor), &att); err != nil {
		t.Fatal(err)
	}
	want := []attemptEntry{
		{Seq: seqs[4], Outcome: "succeeded", Source: events.Source{IP: "198.51.100.7", DeviceID: "dev-ok", Platform: "ios"}},
		{Seq: seqs[3], Outcome: "failed", Source: events.Source{IP: "192.0.2.13", DeviceID: "dev-3", Platform: "macos"}},
		{Seq: seqs[2], Outcome: "failed", Source: events.Source{IP: "192.0.2.12", DeviceID: "dev-2", Platform: "android"}},
		{Seq: seqs[1], Outcome: "failed", Source: events.Source{IP: "192.0.2.11", DeviceID: "dev-1", Platform: "ios"}},
	}
	if !reflect.DeepEqual(att.Attempts, want) {
		t.Fatalf("attempts\n got %+v\nwant %+v", att.Attempts, want)
	}
	if err := json.Unmarshal(in.get("/v1/sites/acme/attempts?outcome=failed&limit=2", auditor), &att); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(att.Attempts, want[1:3]) {
		t.Fatalf("failed attempts, limit 2: %+v", att.Attempts)
	}

	// Scope: the auditor of acme sees acme only; beta does not exist for it.
	in.get("/v1/sites/acme/passcode", auditor)
	for _, p := range []string{"/v1/sites/beta/passcode", "/v1/sites/beta/audit", "/v1/sites/beta/attempts"} {
		in.wantStatus("GET", p, auditor, http.StatusNotFound, apierror.CodeNotFound)
	}
	in.get("/v1/sites/beta/passcode", admin)
	in.wantStatus("POST", "/v1/sites/acme/passcode/disable", auditor, http.StatusForbidden, apierror.CodeForbidden)
	in.wantStatus("POST", "/v1/sites/acme/passcode", auditor, http.StatusForbidden, apierror.CodeForbidden)
	in.wantStatus("POST", "/v1/sites/beta/passcode", auditor, http.StatusNotFound, apierror.CodeNotFound)
	in.wantStatus("GET", "/v1/sites/acme/audit?limit=1000", auditor, http.StatusBadRequest, apierror.CodeInvalidRequest)
	// A site that exists nowhere reads as status none for an admin of all sites.
	if err := json.Unmarshal(in.get("/v1/sites/gamma/passcode", admin), &st); err != nil || st.Status != "none" {
		t.Fatalf("unknown site: %+v %v", st, err)
	}
	listed := func(token string) []string {
		var resp struct {
			Sites []readState `json:"sites"`
		}
		if err := json.Unmarshal(in.get("/v1/sites"+minSeq, token), &resp); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range resp.Sites {
			out = append(out, s.Site+":"+s.Status)
		}
		return out
	}
	if got := listed(auditor); !reflect.DeepEqual(got, []string{"acme:disabled"}) {
		t.Fatalf("auditor lists %v", got)
	}
	if got := listed(admin); !reflect.DeepEqual(got, []string{"acme:disabled", "beta:active"}) {
		t.Fatalf("admin lists %v", got)
	}

	// Restart on the same data dir: right after ready, without min_seq, the
	// reads are the same documents.
	reads := []string{"/v1/sites", "/v1/sites/acme/passcode", "/v1/sites/beta/passcode",
		"/v1/sites/acme/audit?limit=500", "/v1/sites/beta/audit?limit=500", "/v1/sites/acme/attempts?limit=500"}
	before := map[string][]byte{}
	for _, p := range reads {
		before[p] = in.get(p, admin)
	}
	nc.Close()
	in.stop()
	in2 := startInstance(t, dataDir)
	for _, p := range reads {
		if got := in2.get(p, admin); !bytes.Equal(got, before[p]) {
			t.Errorf("GET %s after restart:\n got %s\nwant %s", p, got, before[p])
		}
	}
	in2.wantStatus("GET", "/readyz", "", http.StatusOK, "")
}

// TestReadSidePoisonMessage: an undecodable message published straight to a
// site's event subject does not stop the projections: it is moved to the
// dead-letter subject with its reason, and the next good event is applied.
func TestReadSidePoisonMessage(t *testing.T) {
	dataDir := t.TempDir()
	in := startInstance(t, dataDir)
	admin := readAdminToken(t, dataDir)

	var first struct {
		Seq uint64 `json:"seq"`
	}
	if code, _ := in.do("POST", "/v1/sites/acme/passcode", admin, nil, &first); code != http.StatusCreated {
		t.Fatalf("generate: %d", code)
	}
	// Only the service user may write the event log; the test logs in as it
	// to put the poison in, as a buggy or compromised writer would.
	nc := connectService(t, in.natsURL)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	poison := []byte(`{"id":"01JPOISON","type":"PasscodeGenerated","site":"acme","data":`)
	ack, err := js.Publish(ctx, events.Subject("acme"), poison)
	if err != nil {
		t.Fatal(err)
	}

	// The next good event, on another site (acme's own commands ignore the
	// poison as well: TestForgedEventsEndToEnd).
	var next struct {
		Seq   uint64    `json:"seq"`
		State readState `json:"state"`
	}
	if code, _ := in.do("POST", "/v1/sites/beta/passcode", admin, nil, &next); code != http.StatusCreated || next.Seq <= ack.Sequence {
		t.Fatalf("generate after the poison: %d seq %d (poison at %d)", code, next.Seq, ack.Sequence)
	}
	var st readState
	if err := json.Unmarshal(in.get(fmt.Sprintf("/v1/sites/beta/passcode?min_seq=%d", next.Seq), admin), &st); err != nil {
		t.Fatal(err)
	}
	if st.Status != "active" || st.Seq != next.Seq || st.PasscodeID != next.State.PasscodeID {
		t.Fatalf("beta after the poison: %+v", st)
	}
	// A read waiting for the poison's own sequence is answered too.
	if err := json.Unmarshal(in.get(fmt.Sprintf("/v1/sites/acme/passcode?min_seq=%d", ack.Sequence), admin), &st); err != nil {
		t.Fatal(err)
	}
	if st.Status != "active" || st.Seq != first.Seq {
		t.Fatalf("acme changed by the poison: %+v", st)
	}
	var page auditPage
	if err := json.Unmarshal(in.get("/v1/sites/acme/audit", admin), &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 1 || page.Entries[0].Seq != first.Seq {
		t.Fatalf("acme audit after the poison: %+v", page.Entries)
	}

	// The dead letter, with its reason and origin.
	dl, err := js.Stream(ctx, consume.DefaultDeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "instance-id"))
	if err != nil {
		t.Fatal(err)
	}
	instance := strings.ToLower(strings.TrimSpace(string(b)))
	subject := consume.DefaultConfig().DeadLetterSubject(projector.Durable(instance))
	var msg *jetstream.RawStreamMsg
	natstest.Eventually(t, 10*time.Second, func() error {
		msg, err = dl.GetLastMsgForSubject(ctx, subject)
		return err
	})
	if !bytes.Equal(msg.Data, poison) {
		t.Fatalf("dead letter payload %q, want the poison", msg.Data)
	}
	if got := msg.Header.Get(consume.HeaderOriginalSeq); got != strconv.FormatUint(ack.Sequence, 10) {
		t.Fatalf("dead letter original seq %q, want %d", got, ack.Sequence)
	}
	if got := msg.Header.Get(consume.HeaderOriginalSubject); got != events.Subject("acme") {
		t.Fatalf("dead letter original subject %q", got)
	}
	if msg.Header.Get(consume.HeaderDeadLetterReason) == "" {
		t.Fatal("dead letter without a reason")
	}
	// Nothing is left pending: the service is ready.
	natstest.Eventually(t, 10*time.Second, func() error {
		if code, _, b := in.raw("GET", "/readyz", ""); code != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", code, b)
		}
		return nil
	})
}
