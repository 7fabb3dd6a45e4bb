package main

import (
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/enrollgate/enrollgate/internal/natscluster"
)

// TestComposeMatchesTheBinaryAndTheClusterConfig: no Docker engine runs
// here, so this checks what docker-compose.yml hands over: every
// ENROLLGATE_ variable it sets is one the binary reads, every variable the
// shipped cluster configuration reads is set for the NATS nodes, and the
// nodes mount that configuration.
func TestComposeMatchesTheBinaryAndTheClusterConfig(t *testing.T) {
	compose, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(natscluster.ConfigFile())
	if err != nil {
		t.Fatal(err)
	}
	read := map[string]bool{}
	if _, err := parseConfig("serve", nil, func(name string) string { read[name] = true; return "" }, io.Discard); err != nil {
		t.Fatal(err)
	}
	set := regexp.MustCompile(`(?m)^\s+((?:ENROLLGATE|NATS)_[A-Z0-9_]+):`).FindAllStringSubmatch(string(compose), -1)
	var natsEnv []string
	for _, m := range set {
		name := m[1]
		if strings.HasPrefix(name, "NATS_") {
			natsEnv = append(natsEnv, name)
			continue
		}
		if !read[name] && !strings.Contains(string(conf), "$"+name) {
			t.Errorf("docker-compose.yml sets %s, which neither the binary nor the cluster configuration reads", name)
		}
	}
	// Names set inline (`{ <<: *nats-env, NATS_SERVER_NAME: nats1 }`).
	for _, m := range regexp.MustCompile(`(NATS_[A-Z0-9_]+):`).FindAllStringSubmatch(string(compose), -1) {
		natsEnv = append(natsEnv, m[1])
	}
	for _, m := range regexp.MustCompile(`\$((?:ENROLLGATE|NATS)_[A-Z0-9_]+)`).FindAllStringSubmatch(string(conf), -1) {
		if !slices.Contains(natsEnv, m[1]) && !strings.Contains(string(compose), m[1]+":") {
			t.Errorf("the cluster configuration reads $%s, which docker-compose.yml does not set", m[1])
		}
	}
	if n := strings.Count(string(compose), "./deploy/nats/cluster.conf:/etc/nats/cluster.conf:ro"); n != 3 {
		t.Errorf("%d NATS nodes mount deploy/nats/cluster.conf, want 3", n)
	}
	if regexp.MustCompile(`"\d+:(4222|6222|7422|8222)"`).MatchString(extractServices(string(compose), "nats")) {
		t.Error("docker-compose.yml publishes a port of the NATS cluster")
	}
}

// extractServices returns the lines of the services whose names start with
// prefix, from the services: section on.
func extractServices(compose, prefix string) string {
	var out []string
	inService := false
	for _, line := range strings.Split(compose[strings.Index(compose, "\nservices:"):], "\n") {
		if strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   ") {
			inService = strings.HasPrefix(strings.TrimSpace(line), prefix)
		}
		if inService {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
