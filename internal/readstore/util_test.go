package readstore

import (
	"os"
	"strings"
)

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }
