package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// semverPattern is SemVer 2.0.0's, which micro enforces.
var semverPattern = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
			t.Errorf("%v: %v", args, err)
		}
		if !strings.Contains(out.String(), "usage: enrollgate") {
			t.Errorf("%v printed %q", args, out.String())
		}
	}
	version = "1.4.2"
	t.Cleanup(func() { version = "" })
	if got := runCmd(t, "version"); got != "enrollgate 1.4.2\n" {
		t.Fatalf("version printed %q", got)
	}
	version = ""
	if v := buildVersion(); !semverPattern.MatchString(v) {
		t.Fatalf("build version %q is not SemVer", v)
	}
}

// TestMicroReportsTheBuildVersion: `nats micro info enrollgate` shows the
// version of the build, not 0.0.0.
func TestMicroReportsTheBuildVersion(t *testing.T) {
	version = "1.4.2"
	t.Cleanup(func() { version = "" })
	dataDir := t.TempDir()
	admin := addTokenCmd(t, dataDir, "admin", "admin@localhost")
	in := startInstance(t, dataDir)
	nc, err := nats.Connect(in.clientURL, nats.Token(admin))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	m, err := nc.Request("$SRV.INFO.enrollgate", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ Version string }
	if err := json.Unmarshal(m.Data, &info); err != nil || info.Version != "1.4.2" {
		t.Fatalf("micro info version %q (%v)", info.Version, err)
	}
}
