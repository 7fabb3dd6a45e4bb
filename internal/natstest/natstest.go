package natstest

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Option changes the server options before start.
type Option func(*server.Options)

// WithStoreDir uses dir as the JetStream store, so that a test can restart a
// server on the same data.
func WithStoreDir(dir string) Option { return func(o *server.Options) { o.StoreDir = dir } }

// WithSyncAlways makes JetStream fsync every write.
func WithSyncAlways() Option { return func(o *server.Options) { o.SyncAlways = true } }

// StartServer starts a JetStream server on 127.0.0.1 and a random port.
func StartServer(tb testing.TB, opts ...Option) *server.Server {
	tb.Helper()
	o := &server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(),
		NoSigs: true, NoLog: true, MaxPayload: 1 << 20,
	}
	for _, opt := range opts {
		opt(o)
	}
	s, err := server.NewServer(o)
	if err != nil {
		tb.Fatalf("natstest: new server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		tb.Fatal("natstest: server not ready in 10s")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect returns a client connection closed by the test's cleanup.
func Connect(tb testing.TB, s *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.Name(tb.Name()))
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// Eventually polls fn until it returns nil or the timeout passes, then fails
// the test with fn's last error. It polls instead of sleeping a fixed time.
func Eventually(tb testing.TB, timeout time.Duration, fn func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not true after %s: %v", timeout, err)
		}
		time.Sleep(wait)
		wait = min(wait*2, 50*time.Millisecond)
	}
}

// LogBuffer collects what loggers write from many goroutines, for a test to
// read back (to find a line, or to prove that a secret is in none).
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
