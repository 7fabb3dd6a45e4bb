package natscluster

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// ServiceUser is the cluster's only user (deploy/nats/cluster.conf).
const ServiceUser = "enrollgate"

// Cluster is a running cluster of nats-server processes.
type Cluster struct {
	// Password is the service user's.
	Password string
	Nodes    []*Node
}

// Node is one nats-server process.
type Node struct {
	Name       string
	ClientPort int
	LeafPort   int
	env        []string
	bin        string
	conf       string
	log        *os.File

	mu  sync.Mutex
	cmd *exec.Cmd
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds nats-server from the module cache once per test process
// and returns its path.
func Binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "enrollgate-nats-server-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "nats-server")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/nats-io/nats-server/v2")
		cmd.Dir = moduleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build nats-server: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

// moduleRoot is the directory of go.mod, found from this package's tests'
// working directory upwards.
func moduleRoot() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// ConfigFile is the shipped node configuration.
func ConfigFile() string { return filepath.Join(moduleRoot(), "deploy", "nats", "cluster.conf") }

// freePorts asks the kernel for n free loopback ports.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// Start runs a 3-node cluster with the shipped configuration and waits
// until every node answers and JetStream has a meta leader. The test's
// cleanup kills it.
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	bin := Binary(tb)
	dir := tb.TempDir()
	c := &Cluster{Password: "cluster-test-service-password"}
	const routePassword = "cluster-test-route-password"
	ports := freePorts(tb, 12)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("NATS_ROUTE_%d=nats-route://route:%s@127.0.0.1:%d", i+1, routePassword, ports[3+i]))
	}
	for i := range 3 {
		n := &Node{Name: fmt.Sprintf("n%d", i+1), ClientPort: ports[i], LeafPort: ports[6+i], bin: bin, conf: ConfigFile()}
		n.env = append([]string{
			"NATS_SERVER_NAME=" + n.Name,
			fmt.Sprintf("NATS_LISTEN=127.0.0.1:%d", n.ClientPort),
			fmt.Sprintf("NATS_MONITOR_LISTEN=127.0.0.1:%d", ports[9+i]),
			"NATS_STORE_DIR=" + filepath.Join(dir, n.Name),
			"NATS_SYNC_INTERVAL=120s",
			fmt.Sprintf("NATS_CLUSTER_LISTEN=127.0.0.1:%d", ports[3+i]),
			"NATS_ROUTE_PASSWORD=" + routePassword,
			fmt.Sprintf("NATS_LEAF_LISTEN=127.0.0.1:%d", n.LeafPort),
			"ENROLLGATE_NATS_PASSWORD=" + c.Password,
		}, routes...)
		log, err := os.Create(filepath.Join(dir, n.Name+".log"))
		if err != nil {
			tb.Fatal(err)
		}
		n.log = log
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(func() {
		for _, n := range c.Nodes {
			n.Kill()
			n.log.Close()
		}
		if tb.Failed() {
			for _, n := range c.Nodes {
				b, _ := os.ReadFile(n.log.Name())
				tb.Logf("%s log (last 2 KiB):\n%s", n.Name, tail(b, 2048))
			}
		}
	})
	c.WaitReady(tb, 30*time.Second)
	return c
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Start starts the node's process (again, after Kill).
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	cmd := exec.Command(n.bin, "-c", n.conf)
	cmd.Env = append(os.Environ(), n.env...)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	n.cmd = cmd
	return nil
}

// Kill SIGKILLs the node's process and waits for it to end.
func (n *Node) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
	n.cmd = nil
}

// ClientURL is the node's client URL, without credentials.
func (n *Node) ClientURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.ClientPort) }

// ServiceURLs are the nodes' client URLs with the service's credentials,
// comma-separated, as --nats-url takes them.
func (c *Cluster) ServiceURLs() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", ServiceUser, c.Password, n.ClientPort))
	}
	return strings.Join(urls, ",")
}

// LeafURLs are the nodes' leaf node URLs, comma-separated, as
// --nats-leaf-url takes them.
func (c *Cluster) LeafURLs() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, fmt.Sprintf("nats-leaf://127.0.0.1:%d", n.LeafPort))
	}
	return strings.Join(urls, ",")
}
