package faults

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/internal/natscluster"
)

// Config sizes a run. The zero value of a field takes its default.
type Config struct {
	// Dir holds the binaries, the nodes' and replicas' data and logs.
	Dir string
	// Rate is the background load's verdicts per second, over all replicas.
	Rate int
	// Warmup is how long the load runs before a fault, Tail how long after
	// the service answered again.
	Warmup, Tail time.Duration
	// StormSites and StormAttempts size the lockout storm: that many sites
	// at once, each with that many concurrent wrong attempts.
	StormSites, StormAttempts int
	// Threshold is the replicas' lockout threshold (--max-failed-attempts).
	Threshold int
	// AlertWithin is how soon a lockout's alert must follow its last
	// failure, when at least one replica stayed up.
	AlertWithin time.Duration
	// Progress receives a line per step; nil discards them.
	Progress io.Writer
}

func (c *Config) setDefaults() {
	if c.Rate == 0 {
		c.Rate = 100
	}
	if c.Warmup == 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Tail == 0 {
		c.Tail = 3 * time.Second
	}
	if c.StormSites == 0 {
		c.StormSites = 3
	}
	if c.StormAttempts == 0 {
		c.StormAttempts = 300
	}
	if c.Threshold == 0 {
		c.Threshold = 10
	}
	if c.AlertWithin == 0 {
		c.AlertWithin = 5 * time.Second
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// Suite is a cluster, three replicas and the clients that drive them.
type Suite struct {
	cfg      Config
	natsBin  string
	egBin    string
	cluster  *natscluster.Cluster
	Replicas []*Replica
	// svc reads the streams as the service user.
	svc *nats.Conn
	js  jetstream.JetStream
	// edges are enrollment frontends' connections, one per replica's edge.
	edges []*nats.Conn
	http  *http.Client

	adminToken, enrollToken string
	macKey, sealKey         string

	mu    sync.Mutex
	ipSeq uint32
	seq   int
	// edgeErrs counts the frontends' asynchronous connection errors (a
	// refused login on reconnect), by replica and message.
	edgeErrs map[string]int
}

// Build builds nats-server (from the module cache) and enrollgate into dir.
func Build(dir string) (natsBin, egBin string, err error) {
	natsBin, egBin = filepath.Join(dir, "nats-server"), filepath.Join(dir, "enrollgate")
	errc := make(chan error, 1)
	go func() { errc <- natscluster.Build(natsBin) }()
	cmd := exec.Command("go", "build", "-o", egBin, "./cmd/enrollgate")
	cmd.Dir = natscluster.ModuleRoot()
	out, berr := cmd.CombinedOutput()
	if nerr := <-errc; nerr != nil {
		return "", "", nerr
	}
	if berr != nil {
		return "", "", fmt.Errorf("build enrollgate: %v\n%s", berr, out)
	}
	return natsBin, egBin, nil
}

// New prepares a suite with the binaries of Build; Start or a first-start
// scenario starts the cluster and replicas.
func New(cfg Config, natsBin, egBin string) *Suite {
	cfg.setDefaults()
	return &Suite{cfg: cfg, natsBin: natsBin, egBin: egBin, http: &http.Client{Timeout: 3 * time.Second},
		adminToken: "faults-admin-token-" + random(12), enrollToken: "faults-enrollment-token-" + random(12),
		macKey: randomKey(), sealKey: randomKey(), edgeErrs: map[string]int{}}
}

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func (s *Suite) progress(format string, args ...any) {
	fmt.Fprintf(s.cfg.Progress, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// startCluster starts a fresh cluster and the service's connection to it,
// and prepares (without starting) the replicas.
func (s *Suite) startCluster() error {
	dir := filepath.Join(s.cfg.Dir, "cluster")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	c, err := natscluster.New(natscluster.Options{Dir: dir, Bin: s.natsBin})
	if err != nil {
		return err
	}
	s.cluster = c
	if err := c.Ready(60 * time.Second); err != nil {
		return err
	}
	if s.svc, err = c.Connect("faults-reader"); err != nil {
		return err
	}
	if s.js, err = jetstream.New(s.svc); err != nil {
		return err
	}
	ports, err := natscluster.FreePorts(6)
	if err != nil {
		return err
	}
	for i := range 3 {
		name := fmt.Sprintf("eg%d", i+1)
		data := filepath.Join(s.cfg.Dir, name)
		if err := os.MkdirAll(data, 0o700); err != nil {
			return err
		}
		r := &Replica{Name: name, HTTPAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i]), NATSAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
			bin: s.egBin, logPath: filepath.Join(s.cfg.Dir, name+".log")}
		r.args = []string{"serve", "--data-dir", data, "--http", r.HTTPAddr, "--nats-listen", r.NATSAddr,
			"--nats-url", c.ServiceURLs(), "--nats-leaf-url", c.LeafURLs(), "--replicas", "3",
			"--admin-token", s.adminToken, "--enrollment-token", s.enrollToken,
			"--mac-key", s.macKey, "--seal-key", s.sealKey,
			"--max-failed-attempts", fmt.Sprint(s.cfg.Threshold), "--log-format", "json"}
		s.Replicas = append(s.Replicas, r)
	}
	return nil
}

// startReplicasInTurn starts every replica that is not running, each once
// the one before is ready, then connects the frontends.
func (s *Suite) startReplicasInTurn(ctx context.Context) error {
	for _, r := range s.Replicas {
		if r.Running() {
			continue
		}
		if err := r.Start(); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err := r.WaitReady(wctx)
		cancel()
		if err != nil {
			return err
		}
		r.TakeExits()
	}
	return s.connectEdges()
}

// connectEdges connects one enrollment frontend to each replica's edge,
// once; the connections reconnect forever.
func (s *Suite) connectEdges() error {
	if len(s.edges) == len(s.Replicas) {
		return nil
	}
	for _, r := range s.Replicas {
		name := r.Name
		// A frontend keeps trying whatever the edge answers while it
		// restarts, and the suite reports what it answered.
		nc, err := nats.Connect("nats://"+r.NATSAddr, nats.Name("faults-frontend-"+r.Name), nats.Token(s.enrollToken),
			nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true),
			nats.IgnoreAuthErrorAbort(),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				s.mu.Lock()
				s.edgeErrs[name+"'s edge: "+err.Error()]++
				s.mu.Unlock()
			}))
		if err != nil {
			return fmt.Errorf("connect to %s's edge: %w", r.Name, err)
		}
		s.edges = append(s.edges, nc)
	}
	return nil
}

// Close kills the replicas and the cluster.
func (s *Suite) Close() {
	for _, nc := range s.edges {
		nc.Close()
	}
	for _, r := range s.Replicas {
		r.Kill()
	}
	if s.svc != nil {
		s.svc.Close()
	}
	if s.cluster != nil {
		s.cluster.Close()
	}
}

// waitAllReady waits until every replica is ready.
func (s *Suite) waitAllReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var errs []error
	for _, r := range s.Replicas {
		if err := r.WaitReady(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// takeEdgeErrors returns the frontends' connection errors since the last
// call.
func (s *Suite) takeEdgeErrors() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.edgeErrs
	s.edgeErrs = map[string]int{}
	return e
}

// nextIP is an address no attempt used before, so that per-source
// throttling never decides a verdict of the suite.
func (s *Suite) nextIP() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ipSeq++
	n := s.ipSeq
	return fmt.Sprintf("10.%d.%d.%d", (n>>16)&255, (n>>8)&255, n&255)
}

// site names a fresh site of the scenario.
func (s *Suite) site(prefix string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return fmt.Sprintf("%s-%d", prefix, s.seq)
}
