package app

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockFileName names the file in the data dir that `serve` and `projections
// rebuild` hold locked while they run, with the holder's pid in it.
const lockFileName = "lock"

// errLocked is what tryLock returns when another process holds the lock.
var errLocked = errors.New("locked")

// lockDataDir takes the data dir for this process, or says which process has
// it: two processes on one data dir would share its read model and keys
// file, and a rebuild would swap the read model under a running service. The
// lock goes with the process (also when it is killed); the file stays.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the data dir: %w", err)
	}
	if err := tryLock(f); err != nil {
		defer f.Close()
		if errors.Is(err, errLocked) {
			pid := "unknown"
			if b, rerr := io.ReadAll(io.LimitReader(f, 32)); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
				pid = strings.TrimSpace(string(b))
			}
			return nil, fmt.Errorf("the data dir %s is in use by a running enrollgate (pid %s); stop it first", dir, pid)
		}
		return nil, fmt.Errorf("lock the data dir: %s: %w", path, err)
	}
	if err := writePID(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock the data dir: write %s: %w", path, err)
	}
	return f, nil
}

// writePID replaces the content of the locked file with this process's pid.
func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}
