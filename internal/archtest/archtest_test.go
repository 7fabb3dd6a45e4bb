// Package archtest checks that dependencies point inward: the core packages
// (events, domain, handlers, projections) import no infrastructure.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

var forbidden = []string{
	"github.com/nats-io/",
	"github.com/ThreeDotsLabs/",
	"github.com/rs/zerolog",
	"net/http",
	"go.etcd.io/bbolt",
}

func TestCoreImportsNoInfrastructure(t *testing.T) {
	for _, pkg := range []string{"events", "domain", "handlers", "projections"} {
		out, err := exec.Command("go", "list", "-deps", "github.com/enrollgate/enrollgate/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 2 {
			t.Fatalf("go list %s listed too little: %q", pkg, out)
		}
		for _, d := range deps {
			for _, f := range forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s depends on %s: the core packages stay free of infrastructure (DESIGN.md)", pkg, d)
				}
			}
		}
	}
}

func TestEventsImportsOnlyStdlibAndULID(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}",
		"github.com/enrollgate/enrollgate/events").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, d := range strings.Fields(string(out)) {
		if d != "github.com/enrollgate/enrollgate/events" && !strings.HasPrefix(d, "github.com/oklog/ulid/") {
			t.Errorf("events depends on %s; it may import only the standard library and ulid", d)
		}
	}
}
