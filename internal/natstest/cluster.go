package natstest

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/internal/natscluster"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// natsServerBinary builds nats-server from the module cache once per test
// process and returns its path.
func natsServerBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "enrollgate-nats-server-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "nats-server")
		buildErr = natscluster.Build(binPath)
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

// StartCluster runs a 3-node cluster of nats-server processes with the
// shipped configuration (natscluster.New) and waits until every node
// answers and JetStream has a meta leader. The test's cleanup kills it, and
// logs the end of each node's log when the test failed.
func StartCluster(tb testing.TB) *natscluster.Cluster {
	tb.Helper()
	dir := tb.TempDir()
	c, err := natscluster.New(natscluster.Options{Dir: dir, Bin: natsServerBinary(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		c.Close()
		if tb.Failed() {
			for _, n := range c.Nodes {
				b, _ := os.ReadFile(filepath.Join(dir, n.Name+".log"))
				tb.Logf("%s log (last 2 KiB):\n%s", n.Name, b[max(0, len(b)-2048):])
			}
		}
	})
	if err := c.Ready(30 * time.Second); err != nil {
		tb.Fatal(err)
	}
	return c
}
