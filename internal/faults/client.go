package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/internal/verifywire"
)

// attempt is one passcode a frontend sends, with its idempotency key.
type attempt struct {
	Site     string
	ID       string
	Passcode string
	IP       string
	Wrong    bool
}

type verifyReply struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

// hasEvent says whether a verdict is one the service stores an event for
// before answering: a success or a counted wrong passcode.
// wrongGuess is a wrong passcode that passes the check character, so that
// it counts toward the lockout as a guess (a typo would answer mistyped).
var wrongGuess = domain.Guess(0)

func (v verifyReply) hasEvent() bool { return v.OK || v.Reason == "wrong_passcode" }

// errNoVerdict: the request got no verdict (no answer, a transport error, a
// 5xx or a micro error); a frontend tries again.
var errNoVerdict = errors.New("no verdict")

func (a attempt) body() []byte {
	b, _ := json.Marshal(map[string]any{"passcode": a.Passcode, "attempt_id": a.ID, "source": map[string]string{"ip": a.IP}})
	return b
}

// targets are the ways a frontend reaches the service: each replica's edge
// over NATS and each replica's HTTP.
func (s *Suite) targets() int { return 2 * len(s.Replicas) }

func (s *Suite) targetName(t int) string {
	r := s.Replicas[(t/2)%len(s.Replicas)]
	if t%2 == 0 {
		return r.Name + "/nats"
	}
	return r.Name + "/http"
}

// verify sends a through target t: even targets are a replica's edge over
// NATS, odd ones its HTTP.
func (s *Suite) verify(ctx context.Context, t int, a attempt) (verifyReply, error) {
	i := (t / 2) % len(s.Replicas)
	if t%2 == 0 {
		return s.verifyNATS(ctx, i, a)
	}
	return s.verifyHTTP(ctx, i, a)
}

func (s *Suite) verifyNATS(ctx context.Context, i int, a attempt) (verifyReply, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	m, err := s.edges[i].RequestWithContext(ctx, verifywire.SubjectPrefix+a.Site, a.body())
	if err != nil {
		return verifyReply{}, fmt.Errorf("%w: %v", errNoVerdict, err)
	}
	if code := m.Header.Get("Nats-Service-Error-Code"); code != "" {
		return verifyReply{}, fmt.Errorf("%w: micro error %s %s", errNoVerdict, code, m.Header.Get("Nats-Service-Error"))
	}
	var v verifyReply
	if err := json.Unmarshal(m.Data, &v); err != nil {
		return verifyReply{}, fmt.Errorf("verify reply %q: %v", m.Data, err)
	}
	return v, nil
}

func (s *Suite) verifyHTTP(ctx context.Context, i int, a attempt) (verifyReply, error) {
	var v verifyReply
	code, err := s.do(ctx, i, http.MethodPost, "/v1/sites/"+a.Site+"/enrollments/verify", s.enrollToken, a.body(), &v)
	switch {
	case err != nil:
		return verifyReply{}, fmt.Errorf("%w: %v", errNoVerdict, err)
	case code == http.StatusOK || code == http.StatusTooManyRequests:
		return v, nil
	case code >= 500:
		return verifyReply{}, fmt.Errorf("%w: HTTP %d", errNoVerdict, code)
	}
	return verifyReply{}, fmt.Errorf("verify answered HTTP %d", code)
}

// do sends an HTTP request to replica i and decodes a 2xx JSON answer into
// out.
func (s *Suite) do(ctx context.Context, i int, method, path, token string, body []byte, out any) (int, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.Replicas[i].HTTPAddr+path, r)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && (resp.StatusCode < 300 || resp.StatusCode == http.StatusTooManyRequests) {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %d %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode, nil
}

// admin sends an admin request to the first replica that answers it with
// a 2xx, trying them in turn until the deadline.
func (s *Suite) admin(ctx context.Context, method, path string, body any, out any) error {
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for try := 0; ; try++ {
		i := try % len(s.Replicas)
		code, err := s.do(ctx, i, method, path, s.adminToken, b, out)
		if err == nil && code < 300 {
			return nil
		}
		if err == nil {
			last = fmt.Errorf("%s %s on %s: HTTP %d", method, path, s.Replicas[i].Name, code)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// generated is a site's passcode generation.
type generated struct {
	Passcode string `json:"passcode"`
	Seq      uint64 `json:"seq"`
	State    struct {
		PasscodeID string `json:"passcode_id"`
	} `json:"state"`
}

func (s *Suite) generate(ctx context.Context, site string) (generated, error) {
	var g generated
	if err := s.admin(ctx, http.MethodPost, "/v1/sites/"+site+"/passcode", nil, &g); err != nil {
		return g, fmt.Errorf("generate %s: %w", site, err)
	}
	if g.Passcode == "" || g.State.PasscodeID == "" {
		return g, fmt.Errorf("generate %s: no passcode in the answer", site)
	}
	return g, nil
}
