package main

import (
	"runtime/debug"
	"strings"
)

// version is set at release builds with -ldflags "-X main.version=1.2.3".
var version = ""

// buildVersion is the version `enrollgate version`, the micro service and
// /metrics report, always SemVer (micro requires it): the release version,
// else the module version the binary was built at (go install …@v1.2.3),
// else 0.0.0-dev with the VCS revision that `go build` records.
func buildVersion() string {
	if version != "" {
		return strings.TrimPrefix(version, "v")
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "0.0.0-dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return strings.TrimPrefix(v, "v")
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			rev = s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = ".dirty"
		}
	}
	if rev == "" {
		return "0.0.0-dev"
	}
	return "0.0.0-dev+" + rev + dirty
}
