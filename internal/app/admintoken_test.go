package app

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteNewFile: the file is written whole with mode 0600; an existing
// file or symbolic link is neither replaced nor followed, and no temporary
// file is left behind.
func TestWriteNewFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := writeNewFile(path, []byte("one\n")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	if err := writeNewFile(path, []byte("two\n")); err == nil {
		t.Fatal("an existing file was replaced")
	}
	if b, _ := os.ReadFile(path); string(b) != "one\n" {
		t.Fatalf("file holds %q", b)
	}
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := writeNewFile(link, []byte("three\n")); err == nil {
		t.Fatal("a dangling symbolic link was followed or replaced")
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Fatalf("the link's target was created: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("dir holds %d entries, want f and link: %v", len(entries), entries)
	}
}
