package faults

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Replica is one enrollgate process (`serve`) with its own data dir and
// fixed ports, so that it comes back on the same addresses after a kill.
type Replica struct {
	Name     string
	HTTPAddr string
	NATSAddr string // its edge, where frontends connect
	bin      string
	args     []string
	logPath  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	killed  bool     // the suite killed it: its end is no news
	exits   []string // ends the suite did not cause, with the last log line
	started int
}

// Start starts the process. Its stderr is appended to the replica's log.
func (r *Replica) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		select {
		case <-r.done:
		default:
			return fmt.Errorf("%s is running", r.Name)
		}
	}
	log, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.bin, r.args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", r.Name, err)
	}
	r.started++
	done := make(chan struct{})
	r.cmd, r.done, r.killed = cmd, done, false
	go func() {
		err := cmd.Wait()
		log.Close()
		r.mu.Lock()
		if !r.killed {
			r.exits = append(r.exits, fmt.Sprintf("%s exited (%v): %s", r.Name, err, r.lastLine()))
		}
		r.mu.Unlock()
		close(done)
	}()
	return nil
}

// Kill SIGKILLs the process and waits for it to end.
func (r *Replica) Kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	if cmd == nil {
		r.mu.Unlock()
		return
	}
	r.killed = true
	r.mu.Unlock()
	_ = cmd.Process.Kill()
	<-done
}

// Running reports whether the process runs.
func (r *Replica) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// TakeExits returns the ends of the process that the suite did not cause
// since the last call.
func (r *Replica) TakeExits() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.exits
	r.exits = nil
	return e
}

// WaitReady polls /readyz until it answers 200, the process ends, or ctx is
// done.
func (r *Replica) WaitReady(ctx context.Context) error { return r.wait(ctx, "/readyz") }

// WaitAlive polls /healthz (the process serves) likewise.
func (r *Replica) WaitAlive(ctx context.Context) error { return r.wait(ctx, "/healthz") }

func (r *Replica) wait(ctx context.Context, path string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		r.mu.Lock()
		done := r.done
		r.mu.Unlock()
		if done == nil {
			return fmt.Errorf("%s was never started", r.Name)
		}
		select {
		case <-done:
			return fmt.Errorf("%s is not running: %s", r.Name, r.lastLine())
		default:
		}
		resp, err := client.Get("http://" + r.HTTPAddr + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s %d", path, resp.StatusCode)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v", r.Name, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lastLine is the last line of the replica's log that says what went wrong:
// the exit message, else the last error line.
func (r *Replica) lastLine() string {
	f, err := os.Open(r.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last, lastErr string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		last = line
		if strings.Contains(line, `"level":"error"`) || strings.Contains(line, `"level":"fatal"`) {
			lastErr = line
		}
	}
	if strings.HasPrefix(last, "enrollgate:") || lastErr == "" {
		return truncate(last, 300)
	}
	return truncate(lastErr, 300)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
