package natsserver

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enrollgate/enrollgate/internal/natstest"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

type syncBuffer = natstest.LogBuffer

func start(t testing.TB, cfg Config, log zerolog.Logger) *server.Server {
	t.Helper()
	s, err := Start(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func connectJS(t *testing.T, s *server.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestStartRandomPortAndRestartKeepsStream(t *testing.T) {
	dir := t.TempDir()
	var logs syncBuffer
	cfg := Config{Listen: "127.0.0.1:0", StoreDir: dir, SyncAlways: true}
	s := start(t, cfg, zerolog.New(&logs))
	if strings.HasSuffix(s.ClientURL(), ":0") || strings.HasSuffix(s.ClientURL(), ":-1") || strings.HasSuffix(s.ClientURL(), ":4222") {
		t.Fatalf("client URL %s is not a random port", s.ClientURL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := connectJS(t, s)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"level":"info"`) || !strings.Contains(logs.String(), `"component":"nats-server"`) {
		t.Fatalf("server notices not bridged to zerolog: %q", logs.String())
	}
	s.Shutdown()
	s.WaitForShutdown()

	s2 := start(t, cfg, zerolog.Nop())
	js2 := connectJS(t, s2)
	st2, err := js2.Stream(ctx, "T")
	if err != nil {
		t.Fatalf("stream lost across restart: %v", err)
	}
	msg, err := st2.GetLastMsgForSubject(ctx, "t.a")
	if err != nil || string(msg.Data) != "hello" {
		t.Fatalf("message lost across restart: %v", err)
	}
}

func TestStartFailsFastOnBadStore(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	begin := time.Now()
	s, err := Start(Config{Listen: "127.0.0.1:0", StoreDir: file}, zerolog.New(&logs))
	if err == nil {
		s.Shutdown()
		t.Fatal("started on a store that is a file")
	}
	if time.Since(begin) > 5*time.Second {
		t.Fatalf("took %s to report a fatal start error", time.Since(begin))
	}
	if !strings.Contains(logs.String(), `"fatal":true`) {
		t.Fatalf("fatal message not logged: %q", logs.String())
	}
	t.Logf("error: %v", err)
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Listen: "nohostport", StoreDir: "x"},
		{Listen: "127.0.0.1:70000", StoreDir: "x"},
		{Listen: "127.0.0.1:abc", StoreDir: "x"},
		{Listen: "127.0.0.1:0"},
		{Listen: "127.0.0.1:0", StoreDir: "x", ReadyTimeout: -1},
	} {
		if err := c.WithDefaults().Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	d := Config{StoreDir: "x"}.WithDefaults()
	if d.Listen != DefaultListen || d.ServerName != DefaultServerName || d.Validate() != nil {
		t.Fatalf("defaults: %+v", d)
	}
	for listen, want := range map[string]int{":0": server.RANDOM_PORT, "127.0.0.1:0": server.RANDOM_PORT, "[::1]:4333": 4333} {
		_, port, err := Config{Listen: listen}.hostPort()
		if err != nil || port != want {
			t.Errorf("%s: port %d, %v; want %d", listen, port, err, want)
		}
	}
}

func TestLoggerBridge(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(zerolog.New(&buf).Level(zerolog.TraceLevel))
	l.Noticef("notice %d", 1)
	l.Warnf("warn %d", 2)
	l.Errorf("error %d", 3)
	l.Fatalf("fatal %d", 4) // must not exit: the test goes on
	l.Fatalf("second fatal")
	l.Debugf("debug %d", 5)
	l.Tracef("trace %d", 6)
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, m["level"].(string)+":"+m["message"].(string))
	}
	want := []string{"info:notice 1", "warn:warn 2", "error:error 3", "error:fatal 4", "error:second fatal", "debug:debug 5", "trace:trace 6"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if l.Fatal() != "fatal 4" {
		t.Fatalf("Fatal() = %q", l.Fatal())
	}
}

func TestLevels(t *testing.T) {
	for lvl, want := range map[zerolog.Level][2]bool{
		zerolog.InfoLevel:  {false, false},
		zerolog.DebugLevel: {true, false},
		zerolog.TraceLevel: {true, true},
	} {
		d, tr := levels(zerolog.Nop().Level(lvl))
		if d != want[0] || tr != want[1] {
			t.Errorf("%s: debug %v trace %v, want %v", lvl, d, tr, want)
		}
	}
}
