package secrets

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/handlers"
)

func openDir(t *testing.T, dir string) *Keeper {
	t.Helper()
	k, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randomKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestKeeperRoundTrips(t *testing.T) {
	k := openDir(t, t.TempDir())
	p, err := k.NewPasscode()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Plain()) != PasscodeLen {
		t.Fatalf("passcode length %d", len(p.Plain()))
	}
	m1, err := k.MAC(k.MACKeyID(), p)
	if err != nil {
		t.Fatal(err)
	}
	m2, _ := k.MAC(k.MACKeyID(), p)
	other, _ := k.MAC(k.MACKeyID(), handlers.NewSecret(p.Plain()+"x"))
	if len(m1) != 32 || !bytes.Equal(m1, m2) || bytes.Equal(m1, other) {
		t.Fatalf("MAC not a deterministic 32-byte keyed hash")
	}
	sealed, keyID, err := k.Seal(p)
	if err != nil {
		t.Fatal(err)
	}
	if keyID != k.SealKeyID() || bytes.Contains(sealed, []byte(p.Plain())) {
		t.Fatalf("sealed copy under %q holds the plain text or the wrong key ID", keyID)
	}
	sealed2, _, _ := k.Seal(p)
	if bytes.Equal(sealed, sealed2) {
		t.Fatal("two seals of one passcode are equal: nonce reused")
	}
	got, err := k.Open(keyID, sealed)
	if err != nil || got.Plain() != p.Plain() {
		t.Fatalf("Open = %v, %v", got, err)
	}
}

func TestKeeperTamperAndUnknownKeys(t *testing.T) {
	k := openDir(t, t.TempDir())
	p := handlers.NewSecret("Abc123def456")
	sealed, keyID, _ := k.Seal(p)
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		if _, err := k.Open(keyID, bad); !errors.Is(err, ErrOpen) {
			t.Fatalf("flipped byte %d: err = %v, want ErrOpen", i, err)
		}
	}
	if _, err := k.Open(keyID, sealed[:len(sealed)-1]); !errors.Is(err, ErrOpen) {
		t.Fatalf("truncated: err = %v", err)
	}
	if _, err := k.Open(keyID, sealed[:5]); !errors.Is(err, ErrOpen) {
		t.Fatalf("too short: err = %v", err)
	}
	if _, err := k.Open("seal-unknown", sealed); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown seal key: err = %v", err)
	}
	if _, err := k.MAC("mac-unknown", p); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown mac key: err = %v", err)
	}
	// The key ID is bound as additional data: the same bytes under another
	// known key ID do not open, even if that key were the same.
	k2 := openDir(t, t.TempDir())
	if _, err := k2.Open(keyID, sealed); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("other keeper: err = %v", err)
	}
	aead := k.set.Load().sealKeys[keyID]
	k.set.Load().sealKeys["alias"] = aead
	if _, err := k.Open("alias", sealed); !errors.Is(err, ErrOpen) {
		t.Fatalf("same key under another ID: err = %v, want ErrOpen", err)
	}
}

func TestKeysFileCreatedAndReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "keys")
	k1 := openDir(t, dir)
	fi, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("keys file mode %04o, want 0600", fi.Mode().Perm())
	}
	di, _ := os.Stat(dir)
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("keys dir mode %04o, want 0700", di.Mode().Perm())
	}
	p := handlers.NewSecret("Abc123def456")
	m1, _ := k1.MAC(k1.MACKeyID(), p)
	sealed, sealID, _ := k1.Seal(p)

	k2 := openDir(t, dir)
	if k2.MACKeyID() != k1.MACKeyID() || k2.SealKeyID() != sealID {
		t.Fatalf("key IDs changed across opens: %s/%s vs %s/%s", k1.MACKeyID(), sealID, k2.MACKeyID(), k2.SealKeyID())
	}
	m2, err := k2.MAC(k1.MACKeyID(), p)
	if err != nil || !bytes.Equal(m1, m2) {
		t.Fatalf("MAC differs after reopening: %v", err)
	}
	if got, err := k2.Open(sealID, sealed); err != nil || got.Plain() != p.Plain() {
		t.Fatalf("open after reopening: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("keys dir holds %d entries, want only %s", len(entries), KeyFileName)
	}
}

func TestRotateKeepsOldKeys(t *testing.T) {
	dir := t.TempDir()
	k1 := openDir(t, dir)
	p := handlers.NewSecret("Abc123def456")
	m1, _ := k1.MAC(k1.MACKeyID(), p)
	sealed, sealID, _ := k1.Seal(p)

	r, err := RotateFile(filepath.Join(dir, KeyFileName), 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	macID, newSealID := r.MAC, r.Seal
	k2 := openDir(t, dir)
	if k2.MACKeyID() != macID || macID == k1.MACKeyID() || k2.SealKeyID() != newSealID || newSealID == sealID {
		t.Fatalf("rotation did not make new current keys")
	}
	if m, err := k2.MAC(k1.MACKeyID(), p); err != nil || !bytes.Equal(m, m1) {
		t.Fatalf("old MAC key lost after rotation: %v", err)
	}
	if got, err := k2.Open(sealID, sealed); err != nil || got.Plain() != p.Plain() {
		t.Fatalf("old seal key lost after rotation: %v", err)
	}
	if m, _ := k2.MAC(macID, p); bytes.Equal(m, m1) {
		t.Fatal("new MAC key hashes like the old one")
	}
	if fi, _ := os.Stat(filepath.Join(dir, KeyFileName)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("rotated file mode %04o", fi.Mode().Perm())
	}
}

func TestConfigKeysOverride(t *testing.T) {
	macKey, sealKey := randomKey(t), randomKey(t)
	p := handlers.NewSecret("Abc123def456")

	// Both configured, no directory: nothing is written anywhere.
	a, err := Open(Config{MACKey: macKey, SealKey: sealKey})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(Config{MACKey: macKey, SealKey: sealKey})
	if err != nil {
		t.Fatal(err)
	}
	ma, _ := a.MAC(a.MACKeyID(), p)
	mb, _ := b.MAC(b.MACKeyID(), p)
	if a.MACKeyID() != b.MACKeyID() || !bytes.Equal(ma, mb) {
		t.Fatal("the same configured key gives different IDs or MACs")
	}
	sealed, id, _ := a.Seal(p)
	if got, err := b.Open(id, sealed); err != nil || got.Plain() != p.Plain() {
		t.Fatalf("configured seal key does not open across keepers: %v", err)
	}

	// Configured keys win over the file's, whose keys still verify old
	// generations.
	dir := t.TempDir()
	fromFile := openDir(t, dir)
	mf, _ := fromFile.MAC(fromFile.MACKeyID(), p)
	c, err := Open(Config{Dir: dir, MACKey: macKey, SealKey: sealKey})
	if err != nil {
		t.Fatal(err)
	}
	if c.MACKeyID() != a.MACKeyID() || c.SealKeyID() != a.SealKeyID() {
		t.Fatal("configured keys are not current")
	}
	if m, err := c.MAC(fromFile.MACKeyID(), p); err != nil || !bytes.Equal(m, mf) {
		t.Fatalf("file key unavailable next to configured keys: %v", err)
	}
	// Only one configured: the other comes from the file.
	d, err := Open(Config{Dir: dir, MACKey: macKey})
	if err != nil {
		t.Fatal(err)
	}
	if d.MACKeyID() != a.MACKeyID() || d.SealKeyID() != fromFile.SealKeyID() {
		t.Fatal("half-configured keeper mixes the wrong keys")
	}
}

func TestOpenRefusesBadInput(t *testing.T) {
	secretish := randomKey(t)
	short := base64.StdEncoding.EncodeToString([]byte("too short"))
	for name, cfg := range map[string]Config{
		"no dir":       {},
		"only mac key": {MACKey: secretish},
		"short key":    {Dir: t.TempDir(), MACKey: short},
		"not base64":   {Dir: t.TempDir(), SealKey: "!!" + secretish},
	} {
		_, err := Open(cfg)
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if strings.Contains(err.Error(), secretish) || strings.Contains(err.Error(), short) {
			t.Fatalf("%s: error quotes the key: %v", name, err)
		}
	}
}

func TestKeysFileModeRefused(t *testing.T) {
	dir := t.TempDir()
	openDir(t, dir)
	path := filepath.Join(dir, KeyFileName)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Open(Config{Dir: dir})
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("mode %04o: err = %v, want a refusal", mode, err)
		}
	}
	os.Chmod(path, 0o400)
	if _, err := Open(Config{Dir: dir}); err != nil {
		t.Fatalf("mode 0400 refused: %v", err)
	}
}

func TestMalformedKeysFileRefused(t *testing.T) {
	good := randomKey(t)
	valid := func() map[string]any {
		return map[string]any{"version": 1, "current_mac": "m1", "current_seal": "s1",
			"mac_keys": map[string]string{"m1": good}, "seal_keys": map[string]string{"s1": good}}
	}
	cases := map[string]func(map[string]any){
		"bad version":       func(m map[string]any) { m["version"] = 2 },
		"current missing":   func(m map[string]any) { m["current_mac"] = "m2" },
		"short key":         func(m map[string]any) { m["seal_keys"] = map[string]string{"s1": "c2hvcnQ="} },
		"not base64":        func(m map[string]any) { m["mac_keys"] = map[string]string{"m1": "%%" + good} },
		"bad key id":        func(m map[string]any) { m["mac_keys"] = map[string]string{"m1": good, "a b": good} },
		"unknown field":     func(m map[string]any) { m["extra"] = true },
		"wrong type of key": func(m map[string]any) { m["mac_keys"] = []string{good} },
	}
	for name, mutate := range cases {
		dir := t.TempDir()
		m := valid()
		mutate(m)
		data, _ := json.Marshal(m)
		if err := os.WriteFile(filepath.Join(dir, KeyFileName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(Config{Dir: dir})
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if strings.Contains(err.Error(), good) || strings.Contains(err.Error(), good[:16]) {
			t.Fatalf("%s: error quotes key material: %v", name, err)
		}
	}
	// The valid variant loads, so the cases above fail for their own reason.
	dir := t.TempDir()
	data, _ := json.Marshal(valid())
	os.WriteFile(filepath.Join(dir, KeyFileName), data, 0o600)
	if _, err := Open(Config{Dir: dir}); err != nil {
		t.Fatalf("valid file refused: %v", err)
	}
	// Garbage.
	os.WriteFile(filepath.Join(dir, KeyFileName), []byte("{not json"), 0o600)
	if _, err := Open(Config{Dir: dir}); err == nil {
		t.Fatal("garbage accepted")
	}
}

func TestConcurrentFirstStartAgrees(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	ids := make(chan string, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			k, err := Open(Config{Dir: dir})
			if err != nil {
				errs <- err
				return
			}
			ids <- k.MACKeyID() + "/" + k.SealKeyID()
		}()
	}
	first := ""
	for range n {
		select {
		case err := <-errs:
			t.Fatal(err)
		case id := <-ids:
			if first == "" {
				first = id
			} else if id != first {
				t.Fatalf("concurrent first starts disagree: %s vs %s", id, first)
			}
		}
	}
}

func TestNoSecretInFormattedErrors(t *testing.T) {
	k := openDir(t, t.TempDir())
	p := handlers.NewSecret("Abc123def456")
	_, err := k.MAC("nope", p)
	if strings.Contains(err.Error(), p.Plain()) {
		t.Fatalf("error holds the passcode: %v", err)
	}
}

// TestEventMACKeys: the event-MAC key of every MAC key is derived from it
// (so replicas with the same keys agree), is not the key itself (passcode
// hashes and event MACs never share a key), and survives a rotation.
func TestEventMACKeys(t *testing.T) {
	dir := t.TempDir()
	k := openDir(t, dir)
	old := k.EventMACKeyID()
	if old != k.MACKeyID() {
		t.Fatalf("event-MAC key ID %q, want the current MAC key's %q", old, k.MACKeyID())
	}
	sum := func(k *Keeper, id string) []byte {
		t.Helper()
		m, ok := k.NewEventMAC(id)
		if !ok {
			t.Fatalf("event-MAC key %s unknown", id)
		}
		m.Write([]byte("an event"))
		return m.Sum(nil)
	}
	want := sum(k, old)
	if got := sum(openDir(t, dir), old); !bytes.Equal(got, want) {
		t.Fatal("the same keys file derives another event-MAC key")
	}
	// The passcode HMAC of the same bytes is another value.
	if mac, err := k.MAC(old, handlers.NewSecret("an event")); err != nil || bytes.Equal(mac, want) {
		t.Fatalf("event MAC equals the passcode MAC under the same key (err %v)", err)
	}
	if _, ok := k.NewEventMAC("mac-00000000"); ok {
		t.Fatal("unknown event-MAC key accepted")
	}
	if _, err := RotateFile(filepath.Join(dir, KeyFileName), 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	rotated := openDir(t, dir)
	if rotated.EventMACKeyID() == old {
		t.Fatal("rotation kept the old event-MAC key current")
	}
	if got := sum(rotated, old); !bytes.Equal(got, want) {
		t.Fatal("after a rotation the old event-MAC key no longer verifies")
	}
}
