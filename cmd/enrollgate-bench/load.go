package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/verifywire"
)

// Load mix: one attempt in wrongEvery is a wrong passcode, as long as the
// site has had fewer than maxWrongPerSite wrong ones (below the bench
// policy's threshold of 1000, so that no site locks during the run).
const (
	wrongEvery      = 4
	maxWrongPerSite = 900
)

var benchAdmin = events.Actor{Kind: events.ActorAdmin, ID: "bench@enrollgate.example"}

// siteSet holds sites with their passcodes in plain text (kept from
// GeneratePasscode to send right ones) and their wrong attempts so far.
type siteSet struct {
	names []string
	plain []string
	wrong []int32 // atomic; the slice is only resized during setup
}

// generateSites generates a passcode for each site named prefix-<i> for i in
// [len(ss.names), n), with workers commands at a time.
func (ss *siteSet) generate(ctx context.Context, svc *handlers.Service, prefix string, n, workers int) error {
	from := len(ss.names)
	if n <= from {
		return nil
	}
	for i := from; i < n; i++ {
		ss.names = append(ss.names, fmt.Sprintf("%s-%06d", prefix, i))
	}
	ss.plain = append(ss.plain, make([]string, n-from)...)
	ss.wrong = append(ss.wrong, make([]int32, n-from)...)
	var next atomic.Int64
	next.Store(int64(from))
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					errs <- nil
					return
				}
				res, err := svc.GeneratePasscode(ctx, handlers.GeneratePasscode{Site: events.Site(ss.names[i]), Actor: benchAdmin})
				if err != nil {
					errs <- fmt.Errorf("generate %s: %w", ss.names[i], err)
					return
				}
				ss.plain[i] = res.Passcode.Plain()
			}
		}()
	}
	var all []error
	for range workers {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// attemptGen makes verify requests: each with a new attempt ID and a new
// source, so that per-source throttling never engages.
type attemptGen struct {
	run string
	n   atomic.Uint64
}

// next returns the request body for site i of ss, right or wrong by the
// load mix, and whether it is right.
func (g *attemptGen) next(ss *siteSet, i int, rng *rand.Rand) ([]byte, bool) {
	right := true
	if rng.IntN(wrongEvery) == 0 && atomic.AddInt32(&ss.wrong[i], 1) <= maxWrongPerSite {
		right = false
	}
	pass := ss.plain[i]
	if !right {
		pass = "wrong-" + pass
	}
	return g.body(pass), right
}

func (g *attemptGen) body(passcode string) []byte {
	n := g.n.Add(1)
	return g.request(n, passcode, verifywire.SourceJSON{IP: fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255),
		DeviceID: fmt.Sprintf("%s-dev-%d", g.run, n), Platform: "ios", UserAgent: "MDM-Enroll/2.1 (iPhone; iOS 19.1)"})
}

// bodyFrom is body from a given source (S9's throttled ones).
func (g *attemptGen) bodyFrom(passcode string, src verifywire.SourceJSON) []byte {
	return g.request(g.n.Add(1), passcode, src)
}

func (g *attemptGen) request(n uint64, passcode string, src verifywire.SourceJSON) []byte {
	b, _ := json.Marshal(verifywire.Request{ // cannot fail: strings only
		Passcode: passcode, AttemptID: fmt.Sprintf("%s-%d", g.run, n), Source: src})
	return b
}

// frontend is an enrollment frontend: it sends one verify request and
// returns the verdict.
type frontend interface {
	verify(site string, body []byte) (verifywire.Reply, error)
}

// natsFrontend sends requests to enrollgate.verify.<site>.
type natsFrontend struct{ nc *nats.Conn }

func (f natsFrontend) verify(site string, body []byte) (verifywire.Reply, error) {
	msg, err := f.nc.Request(verifywire.SubjectPrefix+site, body, 10*time.Second)
	if err != nil {
		return verifywire.Reply{}, err
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return verifywire.Reply{}, fmt.Errorf("micro error %s: %s", code, msg.Header.Get(micro.ErrorHeader))
	}
	var r verifywire.Reply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return verifywire.Reply{}, fmt.Errorf("decode reply: %w", err)
	}
	return r, nil
}

// httpFrontend posts to /v1/sites/<site>/enrollments/verify.
type httpFrontend struct {
	client *http.Client
	base   string
}

func newHTTPClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConns: 128,
		MaxIdleConnsPerHost: 64, DisableCompression: true, IdleConnTimeout: time.Minute}}
}

func (f httpFrontend) verify(site string, body []byte) (verifywire.Reply, error) {
	req, err := http.NewRequest(http.MethodPost, f.base+"/v1/sites/"+site+"/enrollments/verify", bytes.NewReader(body))
	if err != nil {
		return verifywire.Reply{}, err
	}
	req.Header.Set("Authorization", "Bearer "+enrollmentToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return verifywire.Reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return verifywire.Reply{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return verifywire.Reply{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	var r verifywire.Reply
	if err := json.Unmarshal(data, &r); err != nil {
		return verifywire.Reply{}, fmt.Errorf("decode reply: %w", err)
	}
	return r, nil
}

// closedLoop runs workers, each doing one operation after the other for
// dur, and measures each operation. newOp is called once per worker to make
// its operation (with its own random source and state).
func closedLoop(workers int, dur time.Duration, newOp func(w int) func() error) (sample, error) {
	type result struct {
		lat    []time.Duration
		errors int
		first  error
	}
	results := make([]result, workers)
	ops := make([]func() error, workers)
	for w := range workers {
		ops[w] = newOp(w)
	}
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[w]
			r.lat = make([]time.Duration, 0, 4096)
			for {
				t := time.Now()
				if t.After(deadline) {
					return
				}
				if err := ops[w](); err != nil {
					r.errors++
					if r.first == nil {
						r.first = err
					}
					continue
				}
				r.lat = append(r.lat, time.Since(t))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var s sample
	var first error
	for _, r := range results {
		s.Lat = append(s.Lat, r.lat...)
		s.Errors += r.errors
		if first == nil {
			first = r.first
		}
	}
	s.Ops = len(s.Lat)
	s.finish(elapsed)
	return s, first
}

// verifyLoad runs verify requests from the frontends (one worker each) for
// dur; pick returns, per worker, a function choosing the next site index.
func verifyLoad(fronts []frontend, dur time.Duration, ss *siteSet, gen *attemptGen, seed uint64,
	pick func(rng *rand.Rand) func() int) (sample, error) {
	return closedLoop(len(fronts), dur, func(w int) func() error {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		next := pick(rng)
		f := fronts[w]
		return func() error {
			i := next()
			body, right := gen.next(ss, i, rng)
			r, err := f.verify(ss.names[i], body)
			if err != nil {
				return fmt.Errorf("verify %s: %w", ss.names[i], err)
			}
			if r.OK != right || (!right && r.Reason != string(domain.ReasonWrongPasscode)) {
				return fmt.Errorf("verify %s: got ok=%v reason=%q, want ok=%v", ss.names[i], r.OK, r.Reason, right)
			}
			return nil
		}
	})
}

// uniform picks among the first n sites at random.
func uniform(n int) func(rng *rand.Rand) func() int {
	return func(rng *rand.Rand) func() int { return func() int { return rng.IntN(n) } }
}

// zipf picks among the first n sites with Zipf's law (s=1.1): a few sites
// get most of the traffic.
func zipf(n int) func(rng *rand.Rand) func() int {
	return func(rng *rand.Rand) func() int {
		z := rand.NewZipf(rng, 1.1, 1, uint64(n-1))
		return func() int { return int(z.Uint64()) }
	}
}

// fixed always picks site i.
func fixed(i int) func(rng *rand.Rand) func() int {
	return func(*rand.Rand) func() int { return func() int { return i } }
}
