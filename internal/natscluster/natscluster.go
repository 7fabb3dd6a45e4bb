package natscluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
	Name        string
	ClientPort  int
	LeafPort    int
	MonitorPort int
	env         []string
	bin         string
	conf        string
	log         *os.File

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has ended
}

// Build builds nats-server from the module cache (the version go.mod
// requires) into out.
func Build(out string) error {
	cmd := exec.Command("go", "build", "-o", out, "github.com/nats-io/nats-server/v2")
	cmd.Dir = ModuleRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build nats-server: %v\n%s", err, b)
	}
	return nil
}

// ModuleRoot is the directory of go.mod, found from the working directory
// upwards (a package's tests run in its directory, `go run` in the caller's).
func ModuleRoot() string {
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
func ConfigFile() string { return filepath.Join(ModuleRoot(), "deploy", "nats", "cluster.conf") }

// FreePorts asks the kernel for n free loopback ports.
func FreePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Options configure New.
type Options struct {
	// Dir holds the nodes' stores and logs (<node name>.log).
	Dir string
	// Bin is the nats-server binary (Build makes one).
	Bin string
}

// New starts a 3-node cluster with the shipped configuration on loopback
// ports, without waiting for it (see Ready). Close kills it.
func New(opts Options) (*Cluster, error) {
	c := &Cluster{Password: "cluster-test-service-password"}
	const routePassword = "cluster-test-route-password"
	ports, err := FreePorts(12)
	if err != nil {
		return nil, err
	}
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("NATS_ROUTE_%d=nats-route://route:%s@127.0.0.1:%d", i+1, routePassword, ports[3+i]))
	}
	for i := range 3 {
		n := &Node{Name: fmt.Sprintf("n%d", i+1), ClientPort: ports[i], LeafPort: ports[6+i], MonitorPort: ports[9+i],
			bin: opts.Bin, conf: ConfigFile()}
		n.env = append([]string{
			"NATS_SERVER_NAME=" + n.Name,
			fmt.Sprintf("NATS_LISTEN=127.0.0.1:%d", n.ClientPort),
			fmt.Sprintf("NATS_MONITOR_LISTEN=127.0.0.1:%d", n.MonitorPort),
			"NATS_STORE_DIR=" + filepath.Join(opts.Dir, n.Name),
			"NATS_SYNC_INTERVAL=120s",
			fmt.Sprintf("NATS_CLUSTER_LISTEN=127.0.0.1:%d", ports[3+i]),
			"NATS_ROUTE_PASSWORD=" + routePassword,
			fmt.Sprintf("NATS_LEAF_LISTEN=127.0.0.1:%d", n.LeafPort),
			"ENROLLGATE_NATS_PASSWORD=" + c.Password,
		}, routes...)
		log, err := os.Create(filepath.Join(opts.Dir, n.Name+".log"))
		if err != nil {
			c.Close()
			return nil, err
		}
		n.log = log
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Close kills every node.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		n.Kill()
		if n.log != nil {
			n.log.Close()
		}
	}
}

// Node returns the node named name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Start starts the node's process (again, after Kill).
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("start %s: already running", n.Name)
	}
	cmd := exec.Command(n.bin, "-c", n.conf)
	cmd.Env = append(os.Environ(), n.env...)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	n.cmd, n.done = cmd, done
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
	<-n.done
	n.cmd, n.done = nil, nil
}

// Running reports whether the node's process was started and has not ended.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// ClientURL is the node's client URL, without credentials.
func (n *Node) ClientURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.ClientPort) }

// MonitorURL is the node's monitoring endpoint (/jsz, /healthz).
func (n *Node) MonitorURL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.MonitorPort) }

// ServiceURLs are the nodes' client URLs with the service's credentials,
// comma-separated, as --nats-url takes them.
func (c *Cluster) ServiceURLs() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", ServiceUser, c.Password, n.ClientPort))
	}
	return strings.Join(urls, ",")
}

// ClientURLs are the nodes' client URLs without credentials, comma-separated.
func (c *Cluster) ClientURLs() string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, n.ClientURL())
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

// errNoLeader: no running node names a leader yet.
var errNoLeader = errors.New("no leader")
