package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/oklog/ulid/v2"
)

// instanceFile names the file in the data dir that holds the instance ID.
const instanceFile = "instance-id"

// instanceID returns the ID of the service instance that owns dataDir,
// creating it on the first start. It names what is this instance's own on a
// shared NATS: the durable consumer of its read model.
func instanceID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, instanceFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id := strings.TrimSpace(string(b))
		if _, perr := ulid.ParseStrict(id); perr != nil {
			return "", fmt.Errorf("%s holds %q, not an instance ID (a ULID); remove it to get a new one", path, id)
		}
		return strings.ToLower(id), nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read instance ID: %w", err)
	}
	id := ulid.Make().String()
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write instance ID: %w", err)
	}
	return strings.ToLower(id), nil
}
