package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/internal/natstest"
)

// shareOn returns a store sharing the bucket of s, on a connection of its
// own, as one replica of a cluster would.
func shareOn(t *testing.T, s *server.Server, cfg Config, sc ShareConfig) *Store {
	t.Helper()
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := st.Share(ctx, js, sc); err != nil {
		t.Fatalf("share: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func bucketOf(t *testing.T, s *server.Server) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), Bucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// within fails the test unless fn holds within d, and says how long it took.
func within(t *testing.T, d time.Duration, what string, fn func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !fn() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func signalled(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestSharedTokenHoldsOnEveryReplica: a token created through one store works
// on another sharing the bucket within a second, and a revoke on the second
// stops it on both within a second; each store signals Changes.
func TestSharedTokenHoldsOnEveryReplica(t *testing.T) {
	s := natstest.StartServer(t)
	a := shareOn(t, s, Config{}, ShareConfig{})
	b := shareOn(t, s, Config{AdminToken: bootAdmin}, ShareConfig{})
	signalled(a.Changes())
	signalled(b.Changes())

	ctx := context.Background()
	tok, info, err := a.Create(ctx, Principal{ID: "aud@acme.example", Role: RoleAuditor, Sites: []string{"acme"}}, "ops@acme.example")
	if err != nil {
		t.Fatal(err)
	}
	if info.CreatedBy != "ops@acme.example" || info.CreatedAt.IsZero() || !ValidTokenID(info.ID) {
		t.Fatalf("info %+v", info)
	}
	// The creating store knows the token when Create returns.
	if p, ok := a.Authenticate(tok); !ok || p.ID != "aud@acme.example" {
		t.Fatalf("on the creating store: %+v %v", p, ok)
	}
	took := within(t, time.Second, "the token works on the other store", func() bool { _, ok := b.Authenticate(tok); return ok })
	t.Logf("created on A, works on B after %s", took)
	if !signalled(b.Changes()) {
		t.Error("B did not signal the change")
	}
	var listed *TokenInfo
	for _, ti := range b.List() {
		if ti.ID == info.ID {
			listed = &ti
		}
	}
	if listed == nil || listed.CreatedBy != "ops@acme.example" || listed.Principal.Role != RoleAuditor || listed.Bootstrap {
		t.Fatalf("B lists %+v", b.List())
	}

	if err := b.Delete(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Authenticate(tok); ok {
		t.Fatal("the revoking store still accepts the token")
	}
	took = within(t, time.Second, "the revoked token stops on the other store", func() bool { _, ok := a.Authenticate(tok); return !ok })
	t.Logf("revoked on B, refused on A after %s", took)
	if !signalled(a.Changes()) {
		t.Error("A did not signal the revoke")
	}
	if err := a.Delete(ctx, info.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke again: %v", err)
	}
	if err := a.Delete(ctx, "tok_0000000000000000"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if err := b.Delete(ctx, BootstrapAdminID); !errors.Is(err, ErrBootstrap) {
		t.Fatalf("revoke bootstrap: %v", err)
	}
	// A new store (a replica started later) loads what is there.
	tok2, _, err := b.Create(ctx, Principal{ID: "fe", Role: RoleEnrollment, Sites: []string{AllSites}}, "ops")
	if err != nil {
		t.Fatal(err)
	}
	c := shareOn(t, s, Config{}, ShareConfig{})
	if _, ok := c.Authenticate(tok2); !ok {
		t.Fatal("a store started later does not know a stored token")
	}
	if _, ok := c.Authenticate(tok); ok {
		t.Fatal("a store started later knows a revoked token")
	}
	if _, ok := c.Authenticate(bootAdmin); ok {
		t.Fatal("a bootstrap token of one replica works on another")
	}
}

// TestBucketHoldsHashesOnly: the bucket holds the SHA-256 of each token and
// its principal, never the token.
func TestBucketHoldsHashesOnly(t *testing.T) {
	s := natstest.StartServer(t)
	st := shareOn(t, s, Config{}, ShareConfig{})
	tok, info, err := st.Create(context.Background(), Principal{ID: "alice@acme.example", Role: RoleAdmin, Sites: []string{"acme", "beta"}}, "ops")
	if err != nil {
		t.Fatal(err)
	}
	kv := bucketOf(t, s)
	e, err := kv.Get(context.Background(), keyToken+info.ID)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(tok))
	v := string(e.Value())
	if !strings.Contains(v, hex.EncodeToString(sum[:])) || !strings.Contains(v, "alice@acme.example") {
		t.Fatalf("record %s lacks the hash or the principal", v)
	}
	if strings.Contains(v, tok) || strings.Contains(v, strings.TrimPrefix(tok, TokenPrefix)) {
		t.Fatalf("the bucket holds the token: %s", v)
	}
	status, err := kv.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if status.History() != 1 || status.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Storage != jetstream.FileStorage {
		t.Fatalf("bucket config %+v", status.(*jetstream.KeyValueBucketStatus).StreamInfo().Config)
	}
}

// TestFirstAdminOncePerCluster: stores that start together on an empty
// bucket make exactly one admin token between them, in every trial; a
// later start makes none, even after every token is revoked.
func TestFirstAdminOncePerCluster(t *testing.T) {
	for trial := range 5 {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			s := natstest.StartServer(t)
			const n = 3
			stores := make([]*Store, n)
			for i := range stores {
				stores[i] = shareOn(t, s, Config{}, ShareConfig{})
			}
			var wg sync.WaitGroup
			tokens := make([]string, n)
			errs := make([]error, n)
			start := make(chan struct{})
			for i := range stores {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					tokens[i], _, _, errs[i] = stores[i].EnsureAdmin(context.Background(), "first@acme.example")
				}()
			}
			close(start)
			wg.Wait()
			var made []string
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("store %d: %v", i, errs[i])
				}
				if tokens[i] != "" {
					made = append(made, tokens[i])
				}
			}
			if len(made) != 1 {
				t.Fatalf("%d admin tokens made, want 1", len(made))
			}
			for i, st := range stores {
				within(t, time.Second, fmt.Sprintf("store %d knows the admin token", i), func() bool {
					p, ok := st.Authenticate(made[0])
					return ok && p.ManagesTokens() && p.ID == "first@acme.example"
				})
				if l := st.List(); len(l) != 1 || l[0].CreatedBy != CreatedByFirstStart {
					t.Fatalf("store %d lists %+v, want the one admin token", i, l)
				}
			}
			keys, err := bucketOf(t, s).Keys(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 2 { // first-admin and one token
				t.Fatalf("bucket keys %v", keys)
			}
			if trial > 0 {
				return
			}
			// Revoking everything does not make a later start create another.
			id := stores[0].List()[0].ID
			if err := stores[0].Delete(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			late := shareOn(t, s, Config{}, ShareConfig{})
			if tok, _, created, err := late.EnsureAdmin(context.Background(), ""); err != nil || created || tok != "" {
				t.Fatalf("a later start: created=%v err=%v", created, err)
			}
		})
	}
}

// TestFirstAdminNotWhenConfigured: a bootstrap token or a stored token means
// no admin token is made.
func TestFirstAdminNotWhenConfigured(t *testing.T) {
	s := natstest.StartServer(t)
	boot := shareOn(t, s, Config{EnrollmentToken: bootEnroll}, ShareConfig{})
	if _, _, created, err := boot.EnsureAdmin(context.Background(), ""); err != nil || created {
		t.Fatalf("with a bootstrap token: created=%v err=%v", created, err)
	}
	if _, err := boot.Add(Principal{ID: "x", Role: RoleAuditor, Sites: []string{AllSites}}); err != nil {
		t.Fatal(err)
	}
	other := shareOn(t, s, Config{}, ShareConfig{})
	if _, _, created, err := other.EnsureAdmin(context.Background(), ""); err != nil || created {
		t.Fatalf("with a stored token: created=%v err=%v", created, err)
	}
}

// TestImportTokensFile: the hashes of a tokens file go into the bucket, the
// file is renamed, and a second start imports nothing; a key that exists is
// left alone, and a token revoked after its import is not brought back by
// importing the same file again.
func TestImportTokensFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tokens.json")
	old, err := Open(Config{File: file})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := old.Add(Principal{ID: "admin@localhost", Role: RoleAdmin, Sites: []string{AllSites}})
	if err != nil {
		t.Fatal(err)
	}
	fe, err := old.Add(Principal{ID: "frontend", Role: RoleEnrollment, Sites: []string{"acme"}})
	if err != nil {
		t.Fatal(err)
	}
	backup, _ := os.ReadFile(file)

	s := natstest.StartServer(t)
	st := shareOn(t, s, Config{}, ShareConfig{})
	rep, err := st.Import(context.Background(), file)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Imported != 2 || rep.Kept != 0 || rep.RenamedTo != file+ImportedSuffix {
		t.Fatalf("report %+v", rep)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tokens.json still there: %v", err)
	}
	if _, err := os.Stat(file + ImportedSuffix); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{admin, fe} {
		if _, ok := st.Authenticate(tok); !ok {
			t.Fatal("an imported token does not work")
		}
	}
	for _, ti := range st.List() {
		if ti.CreatedBy != CreatedByImport || ti.CreatedAt.IsZero() {
			t.Fatalf("imported %+v", ti)
		}
	}
	// The import took the first-start decision: no admin token is made.
	if _, _, created, err := shareOn(t, s, Config{}, ShareConfig{}).EnsureAdmin(context.Background(), ""); err != nil || created {
		t.Fatalf("after an import: created=%v err=%v", created, err)
	}

	// A restart: nothing to import.
	again := shareOn(t, s, Config{}, ShareConfig{})
	if rep, err := again.Import(context.Background(), file); err != nil || rep != (ImportReport{}) {
		t.Fatalf("second import: %+v %v", rep, err)
	}

	// The same file once more, after the frontend token was revoked: both
	// keys are left alone, and the revoked token stays revoked.
	feID := ""
	for _, ti := range st.List() {
		if ti.Principal.ID == "frontend" {
			feID = ti.ID
		}
	}
	if err := st.Delete(context.Background(), feID); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err = again.Import(context.Background(), file)
	if err != nil || rep.Imported != 0 || rep.Kept != 2 {
		t.Fatalf("re-import: %+v %v", rep, err)
	}
	time.Sleep(50 * time.Millisecond) // a resurrected token would arrive by now
	if _, ok := again.Authenticate(fe); ok {
		t.Fatal("re-importing brought a revoked token back")
	}
	if _, ok := again.Authenticate(admin); !ok {
		t.Fatal("the admin token stopped working")
	}

	// A corrupt file stops the import before anything is written.
	if err := os.WriteFile(file, []byte(`{"version":1,"tokens":[{"id":"t","sha256":"zz"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := again.Import(context.Background(), file); err == nil {
		t.Fatal("a corrupt tokens file imported")
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatal("a corrupt tokens file was renamed")
	}
}

// TestLastUsedWithoutAWritePerUse: a use shows at once in the List of the
// store that saw it and, after the next write round, in the others'; many
// uses make at most one write per token per round.
func TestLastUsedWithoutAWritePerUse(t *testing.T) {
	s := natstest.StartServer(t)
	clock := &testClock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	const interval = 200 * time.Millisecond
	a := shareOn(t, s, Config{Now: clock.now}, ShareConfig{UsedInterval: interval})
	b := shareOn(t, s, Config{Now: clock.now}, ShareConfig{UsedInterval: interval})
	tok, info, err := a.Create(context.Background(), Principal{ID: "fe", Role: RoleEnrollment, Sites: []string{AllSites}}, "ops")
	if err != nil {
		t.Fatal(err)
	}
	within(t, time.Second, "B knows the token", func() bool { _, ok := b.Authenticate(tok); return ok })
	// B's Authenticate above was a use at 09:00:00.
	clock.add(90 * time.Second)

	kv := bucketOf(t, s)
	w, err := kv.Watch(context.Background(), keyUsed+info.ID, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	var mu sync.Mutex
	writes := 0
	go func() {
		for e := range w.Updates() {
			if e != nil {
				mu.Lock()
				writes++
				mu.Unlock()
			}
		}
	}()

	lastUsed := func(st *Store) time.Time {
		for _, ti := range st.List() {
			if ti.ID == info.ID {
				return ti.LastUsedAt
			}
		}
		return time.Time{}
	}
	for range 500 {
		if _, ok := a.Authenticate(tok); !ok {
			t.Fatal("token refused")
		}
	}
	want := clock.now().UTC().Truncate(time.Second)
	if got := lastUsed(a); !got.Equal(want) {
		t.Fatalf("A's last_used_at %v, want %v at once", got, want)
	}
	within(t, 5*interval, "B shows A's use", func() bool { return lastUsed(b).Equal(want) })
	time.Sleep(3 * interval) // rounds without a new use write nothing
	mu.Lock()
	n := writes
	mu.Unlock()
	// B wrote its use at 09:00 and A its use at 09:01:30: at most one write
	// each, however many uses.
	if n < 1 || n > 2 {
		t.Fatalf("%d writes of the last use for 501 uses, want 1 or 2", n)
	}
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestInvalidRecordInBucketIgnored: a record that does not decode (written
// by hand, say) authenticates nobody, logs its key, and the other tokens
// keep working.
func TestInvalidRecordInBucketIgnored(t *testing.T) {
	s := natstest.StartServer(t)
	logs := &natstest.LogBuffer{}
	st := shareOn(t, s, Config{}, ShareConfig{Log: zerolog.New(logs)})
	tok, _, err := st.Create(context.Background(), Principal{ID: "fe", Role: RoleEnrollment, Sites: []string{AllSites}}, "ops")
	if err != nil {
		t.Fatal(err)
	}
	kv := bucketOf(t, s)
	if _, err := kv.Put(context.Background(), keyToken+"tok_bad", []byte(`{"id":"tok_bad","sha256":"00","principal":{}}`)); err != nil {
		t.Fatal(err)
	}
	within(t, time.Second, "the bad record is logged", func() bool { return strings.Contains(logs.String(), "tok.tok_bad") })
	if _, ok := st.Authenticate(tok); !ok {
		t.Fatal("a bad record broke the other tokens")
	}
	if len(st.List()) != 1 {
		t.Fatalf("list %+v", st.List())
	}
}

func TestShareRefusesAFileStore(t *testing.T) {
	s := natstest.StartServer(t)
	st, err := Open(Config{File: filepath.Join(t.TempDir(), "tokens.json")})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(natstest.Connect(t, s))
	if err := st.Share(context.Background(), js, ShareConfig{}); err == nil {
		t.Fatal("a file store shared a bucket")
	}
}
