package secrets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/handlers"
)

// clock is a settable time for a keeper's pending rotation.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// TestSharedFileRotation: two keepers on one keys file agree; a rotation
// with an activation time is loaded by Reload at once but used only from
// that time on; older keys keep verifying and opening; a key the file drops
// stays loaded; a failed registration keeps the keys in use as they were.
func TestSharedFileRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.json")
	mac, seal, err := InitFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := InitFile(path); err == nil {
		t.Fatal("init over an existing file")
	}
	c := &clock{t: time.Now()}
	a, err := Open(Config{File: path, Dir: t.TempDir(), Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(Config{File: path, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if a.MACKeyID() != mac || b.MACKeyID() != mac || a.SealKeyID() != seal {
		t.Fatalf("keepers on one file disagree: %s %s, want %s", a.MACKeyID(), b.MACKeyID(), mac)
	}
	p := handlers.NewSecret("Abc123def456")
	sealed, _, _ := a.Seal(p)
	oldMAC, _ := a.MAC(mac, p)

	r, err := RotateFile(path, time.Minute, c.t)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RotateFile(path, time.Minute, c.t); err == nil || !strings.Contains(err.Error(), "pending") {
		t.Fatalf("second rotation while one is pending: %v", err)
	}
	var registered []KeyRef
	if _, _, err := a.Reload(func(refs []KeyRef) error { return errors.New("registry down") }); err == nil {
		t.Fatal("reload with a failing registry succeeded")
	}
	if a.Has(KeyRef{kindMAC, r.MAC}) {
		t.Fatal("keys taken in use though they could not be recorded")
	}
	changed, _, err := a.Reload(func(refs []KeyRef) error { registered = refs; return nil })
	if err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	want := map[KeyRef]bool{{kindMAC, mac}: true, {kindSeal, seal}: true, {kindMAC, r.MAC}: true, {kindSeal, r.Seal}: true}
	for _, ref := range registered {
		delete(want, ref)
	}
	if len(want) != 0 {
		t.Fatalf("registered %v, missing %v", registered, want)
	}
	if changed, _, _ := a.Reload(nil); changed {
		t.Fatal("unchanged file reloaded")
	}
	if a.MACKeyID() != mac || a.SealKeyID() != seal {
		t.Fatal("the new keys are in use before their time")
	}
	// b has not reloaded: a lookup of the new key rereads the file.
	if _, ok := b.NewEventMAC(r.MAC); !ok {
		t.Fatal("a keeper that has not reloaded does not find the new key on a miss")
	}
	if b.MACKeyID() != mac {
		t.Fatal("a miss changed the keys in use")
	}
	c.t = r.From
	if a.MACKeyID() != r.MAC || a.SealKeyID() != r.Seal || a.EventMACKeyID() != r.MAC {
		t.Fatalf("at the activation time: %s/%s, want %s/%s", a.MACKeyID(), a.SealKeyID(), r.MAC, r.Seal)
	}
	if got, err := a.Open(seal, sealed); err != nil || got.Plain() != p.Plain() {
		t.Fatalf("old seal key after rotation: %v", err)
	}
	if m, err := a.MAC(mac, p); err != nil || string(m) != string(oldMAC) {
		t.Fatalf("old MAC key after rotation: %v", err)
	}

	// A file that drops a key: the key stays.
	kf, err := loadKeyFilePath(path)
	if err != nil {
		t.Fatal(err)
	}
	kf.promote(c.t)
	delete(kf.MACKeys, mac)
	delete(kf.SealKeys, seal)
	if err := writeKeyFilePath(path, kf, true); err != nil {
		t.Fatal(err)
	}
	_, kept, err := a.Reload(nil)
	if err != nil || len(kept) != 2 || !a.Has(KeyRef{kindMAC, mac}) || !a.Has(KeyRef{kindSeal, seal}) {
		t.Fatalf("dropped keys: kept %v, err %v", kept, err)
	}
	// A key changed under its ID is refused.
	kf.MACKeys[r.MAC] = randomKey(t)
	if err := writeKeyFilePath(path, kf, true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Reload(nil); err == nil {
		t.Fatal("a key changed under its ID was taken")
	}
}

func TestSharedFileRefused(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.json")
	if _, err := Open(Config{File: missing}); err == nil || !strings.Contains(err.Error(), "keys init") {
		t.Fatalf("missing keys file: %v", err)
	}
	path := filepath.Join(dir, "shared.json")
	if _, _, err := InitFile(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{File: path}); err == nil || !strings.Contains(err.Error(), "mode") {
		t.Fatalf("world-readable keys file: %v", err)
	}
}

// TestInitFromDataDirs: a shared file made from two data dirs' keys.json
// holds both, the first one's current.
func TestInitFromDataDirs(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	k1, k2 := openDir(t, d1), openDir(t, d2)
	path := filepath.Join(t.TempDir(), "shared.json")
	mac, _, err := InitFile(path, filepath.Join(d1, KeyFileName), filepath.Join(d2, KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	k, err := Open(Config{File: path})
	if err != nil {
		t.Fatal(err)
	}
	if mac != k1.MACKeyID() || k.MACKeyID() != mac || k.SealKeyID() != k1.SealKeyID() {
		t.Fatal("the first file's keys are not current")
	}
	for _, ref := range append(k1.InUse(), k2.InUse()...) {
		if !k.Has(ref) {
			t.Fatalf("%s lost", ref)
		}
	}
}
