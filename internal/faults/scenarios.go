package faults

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/alerts"
	"github.com/enrollgate/enrollgate/internal/natscluster"
)

// Result is one scenario's row.
type Result struct {
	Scenario                       string
	Passed                         bool
	Acknowledged, Lost, Duplicates int
	// Lockouts is how many lockouts the scenario caused, LockoutsOK how many
	// of them ended with exactly the threshold's failures, one disable and
	// one alert.
	Lockouts, LockoutsOK int
	// Unavailability is the longest time without a verdict during the load.
	Unavailability time.Duration
	// AlertDelay is the longest time from a lockout's last failure to its
	// alert (stream timestamps).
	AlertDelay time.Duration
	Notes      []string
	Elapsed    time.Duration
}

// Scenario is one fault and what follows it.
type Scenario struct {
	Name, About string
	// fresh scenarios start the replicas themselves, before the load, on a
	// cluster no replica has used.
	fresh bool
	run   func(ctx context.Context, s *Suite, r *round) error
}

// Scenarios are every scenario, in the order a full run takes them.
var Scenarios = []Scenario{
	{Name: "first-start", fresh: true, run: firstStart,
		About: "the three replicas started at the same moment against a fresh cluster: all must come up, none may exit"},
	{Name: "lockout-storm", run: lockoutStorm,
		About: "several sites at once get many concurrent wrong attempts over NATS and HTTP through every replica"},
	{Name: "stream-leader", run: killStreamLeader,
		About: "SIGKILL of the node leading ENROLLGATE_EVENTS; restarted once another leads"},
	{Name: "meta-leader", run: killMetaLeader,
		About: "SIGKILL of the JetStream meta leader (from /jsz); restarted once another leads"},
	{Name: "all-nodes", run: killAllNodes,
		About: "SIGKILL of all three nodes at once, then all restarted"},
	{Name: "replica-after-nth", run: killReplicaAfterNth,
		About: "for each replica in turn: a lockout's N failures through its HTTP, SIGKILL right after the N-th verdict, restart"},
	{Name: "all-replicas", run: killAllReplicas,
		About: "a lockout's N failures, then SIGKILL of all three replicas at once, then all restarted together"},
}

// ScenarioNames lists the scenarios' names in order.
func ScenarioNames() []string {
	var names []string
	for _, sc := range Scenarios {
		names = append(names, sc.Name)
	}
	return names
}

// Run runs the named scenarios (all when names is empty) in the order of
// Scenarios, each on the same cluster and replicas, healed in between.
func (s *Suite) Run(ctx context.Context, names []string) ([]Result, error) {
	var selected []Scenario
	for _, name := range names {
		if !slices.Contains(ScenarioNames(), name) {
			return nil, fmt.Errorf("no scenario %q (have %s)", name, strings.Join(ScenarioNames(), ", "))
		}
	}
	for _, sc := range Scenarios {
		if len(names) == 0 || slices.Contains(names, sc.Name) {
			selected = append(selected, sc)
		}
	}
	if len(selected) == 0 {
		return nil, nil
	}
	s.progress("starting a 3-node cluster")
	if err := s.startCluster(); err != nil {
		return nil, err
	}
	if !selected[0].fresh {
		s.progress("starting the replicas one after the other")
		if err := s.startReplicasInTurn(ctx); err != nil {
			return nil, err
		}
	}
	var results []Result
	for _, sc := range selected {
		if err := s.heal(ctx, sc.fresh); err != nil {
			return results, fmt.Errorf("before %s: %w", sc.Name, err)
		}
		s.progress("scenario %s: %s", sc.Name, sc.About)
		res := s.runOne(ctx, sc)
		s.progress("scenario %s: passed %v, %d acknowledged, %d lost, %d duplicates, lockouts %d/%d, unavailability %s, alert delay %s",
			sc.Name, res.Passed, res.Acknowledged, res.Lost, res.Duplicates, res.LockoutsOK, res.Lockouts,
			fmtDuration(res.Unavailability), fmtDuration(res.AlertDelay))
		for _, n := range res.Notes {
			s.progress("  %s", n)
		}
		results = append(results, res)
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
	}
	return results, nil
}

// heal restarts whatever a scenario left down: nodes, then replicas.
func (s *Suite) heal(ctx context.Context, fresh bool) error {
	down := false
	for _, n := range s.cluster.Nodes {
		if !n.Running() {
			down = true
			if err := n.Start(); err != nil {
				return err
			}
		}
	}
	if down {
		if err := s.cluster.Ready(90 * time.Second); err != nil {
			return err
		}
	}
	if fresh {
		return nil
	}
	return s.startReplicasInTurn(ctx)
}

func (s *Suite) runOne(ctx context.Context, sc Scenario) (res Result) {
	started := time.Now()
	r := &round{name: sc.Name, tr: newTracker()}
	res.Scenario = sc.Name
	defer func() { res.Elapsed = time.Since(started) }()
	if sc.fresh {
		if err := sc.run(ctx, s, r); err != nil {
			r.fail("%v", err)
		}
		if err := s.startReplicasInTurn(ctx); err != nil {
			r.fail("%v", err)
			res.Notes, res.Passed = r.notes, false
			return res
		}
	}
	var sites []loadSite
	for range 3 {
		site := s.site(sc.Name + "-load")
		g, err := s.generate(ctx, site)
		if err == nil {
			err = s.admin(ctx, http.MethodPut, "/v1/sites/"+site+"/lockout-policy", map[string]any{"max_failed_attempts": 1000, "failure_window": "1h"}, nil)
		}
		if err != nil {
			r.fail("prepare load: %v", err)
			res.Notes = r.notes
			return res
		}
		sites = append(sites, loadSite{site: site, passcode: g.Passcode})
		r.sites, r.loadSite = append(r.sites, site), append(r.loadSite, site)
	}
	r.load = s.startLoad(ctx, fmt.Sprintf("%s-%s", sc.Name, random(4)), sites, r.tr)
	if err := poll(ctx, 30*time.Second, func() error {
		if n := r.tr.ackedSince(r.load.start); n < 10 {
			return fmt.Errorf("%d verdicts", n)
		}
		return nil
	}); err != nil {
		r.fail("load did not start: %v", err)
	}
	sleep(ctx, time.Until(r.load.start.Add(s.cfg.Warmup)))
	if !sc.fresh {
		if err := sc.run(ctx, s, r); err != nil {
			r.fail("%v", err)
		}
	}
	// The load goes on until the service answers again, and a little more.
	since := r.healedAt
	if since.IsZero() {
		since = r.faultAt
	}
	if !since.IsZero() {
		if err := poll(ctx, 120*time.Second, func() error {
			if r.tr.ackedSince(since) == 0 {
				return fmt.Errorf("no verdict since %s", since.Format("15:04:05.000"))
			}
			return nil
		}); err != nil {
			r.fail("service did not answer again: %v", err)
		}
	}
	sleep(ctx, s.cfg.Tail)
	r.load.stop()
	s.check(ctx, r, &res)
	res.Passed, res.Notes = !r.failed, r.notes
	return res
}

// poll calls fn until it returns nil or timeout passes; it returns fn's
// last error then.
func poll(ctx context.Context, timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func firstStart(ctx context.Context, s *Suite, r *round) error {
	r.faultAt = time.Now()
	for _, rep := range s.Replicas {
		if err := rep.Start(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(s.Replicas))
	for i, rep := range s.Replicas {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = rep.WaitReady(ctx) }()
	}
	wg.Wait()
	for i, rep := range s.Replicas {
		exits := rep.TakeExits()
		for _, e := range exits {
			r.fail("%s", e)
		}
		if errs[i] != nil && len(exits) == 0 {
			r.fail("%v", errs[i])
		}
	}
	if r.failed {
		r.note("the replicas that did not come up were started again one at a time, to run the checks")
	}
	r.healedAt = time.Now()
	return nil
}

// lockoutAttempts sends the threshold's wrong attempts for site one after the
// other through replica i's HTTP, each from a new address; it returns when
// the last verdict is in.
func (s *Suite) lockoutAttempts(ctx context.Context, r *round, i int, site string) error {
	for k := range s.cfg.Threshold {
		a := attempt{Site: site, ID: fmt.Sprintf("%s-lock-%d", site, k), Passcode: wrongGuess, IP: s.nextIP(), Wrong: true}
		v, err := s.verifyHTTP(ctx, i, a)
		if err != nil {
			return fmt.Errorf("%s: failure %d through %s: %w", site, k+1, s.Replicas[i].Name, err)
		}
		r.tr.record(a, v, s.Replicas[i].Name+"/http", time.Now())
		if v.Reason != "wrong_passcode" {
			return fmt.Errorf("%s: failure %d through %s answered %+v", site, k+1, s.Replicas[i].Name, v)
		}
	}
	return nil
}

func (s *Suite) lockoutSite(ctx context.Context, r *round, prefix string) (string, generated, error) {
	site := s.site(prefix)
	g, err := s.generate(ctx, site)
	if err != nil {
		return "", g, err
	}
	r.sites = append(r.sites, site)
	return site, g, nil
}

func lockoutStorm(ctx context.Context, s *Suite, r *round) error {
	var sites []string
	for range s.cfg.StormSites {
		site, g, err := s.lockoutSite(ctx, r, "storm")
		if err != nil {
			return err
		}
		sites = append(sites, site)
		r.lockouts = append(r.lockouts, &lockout{site: site, passcodeID: g.State.PasscodeID, allowed: s.cfg.AlertWithin, why: "no fault"})
	}
	r.faultAt = time.Now()
	const perSite = 50 // concurrent frontends per site
	var wg sync.WaitGroup
	for _, site := range sites {
		for w := range perSite {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := w; k < s.cfg.StormAttempts; k += perSite {
					a := attempt{Site: site, ID: fmt.Sprintf("%s-storm-%d", site, k), Passcode: wrongGuess, IP: s.nextIP(), Wrong: true}
					s.send(ctx, a, k%s.targets(), r.tr, 30*time.Second)
				}
			}()
		}
	}
	wg.Wait()
	r.note("%d sites × %d wrong attempts, %d at a time per site", len(sites), s.cfg.StormAttempts, perSite)
	return nil
}

// killNode kills the node that leader names, waits until another node
// leads, then restarts it and waits until it has caught up.
func (s *Suite) killNode(ctx context.Context, r *round, what string, leader func() (string, error)) error {
	var name string
	if err := poll(ctx, 30*time.Second, func() (err error) { name, err = leader(); return err }); err != nil {
		return fmt.Errorf("find the %s: %w", what, err)
	}
	n := s.cluster.Node(name)
	if n == nil {
		return fmt.Errorf("the %s is %q, not a node of the cluster", what, name)
	}
	r.faultAt = time.Now()
	n.Kill()
	var next string
	err := poll(ctx, 60*time.Second, func() error {
		l, err := leader()
		if err != nil {
			return err
		}
		if l == name {
			return fmt.Errorf("%s still named", name)
		}
		next = l
		return nil
	})
	if err != nil {
		r.fail("no new %s after killing %s: %v", what, name, err)
	} else {
		r.note("killed %s, the %s; %s led after %s", name, what, next, fmtDuration(time.Since(r.faultAt)))
	}
	if err := n.Start(); err != nil {
		return err
	}
	r.healedAt = time.Now()
	return s.caughtUp(ctx)
}

// caughtUp waits until both streams have all three replicas current.
func (s *Suite) caughtUp(ctx context.Context) error {
	return poll(ctx, 90*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		for _, stream := range []string{events.StreamName, alerts.StreamName} {
			if err := natscluster.StreamCurrent(cctx, s.js, stream, 3); err != nil {
				return err
			}
		}
		return nil
	})
}

func killStreamLeader(ctx context.Context, s *Suite, r *round) error {
	return s.killNode(ctx, r, "leader of "+events.StreamName, func() (string, error) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		return natscluster.StreamLeader(cctx, s.js, events.StreamName)
	})
}

func killMetaLeader(ctx context.Context, s *Suite, r *round) error {
	return s.killNode(ctx, r, "meta leader", s.cluster.MetaLeader)
}

func killAllNodes(ctx context.Context, s *Suite, r *round) error {
	r.faultAt = time.Now()
	var wg sync.WaitGroup
	for _, n := range s.cluster.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.Kill() }()
	}
	wg.Wait()
	for _, n := range s.cluster.Nodes {
		if err := n.Start(); err != nil {
			return err
		}
	}
	r.healedAt = time.Now()
	if err := s.cluster.Ready(90 * time.Second); err != nil {
		return err
	}
	r.note("cluster answered again %s after the kill", fmtDuration(time.Since(r.faultAt)))
	return s.caughtUp(ctx)
}

func killReplicaAfterNth(ctx context.Context, s *Suite, r *round) error {
	for i, victim := range s.Replicas {
		site, g, err := s.lockoutSite(ctx, r, "replica-kill")
		if err != nil {
			return err
		}
		lo := &lockout{site: site, passcodeID: g.State.PasscodeID, allowed: s.cfg.AlertWithin, why: "two replicas stayed up"}
		r.lockouts = append(r.lockouts, lo)
		if err := s.lockoutAttempts(ctx, r, i, site); err != nil {
			return err
		}
		victim.Kill()
		killed := time.Now()
		if r.faultAt.IsZero() {
			r.faultAt = killed
		}
		// Wait for this lockout's alert before the next kill, so that each
		// delay belongs to one kill.
		err = poll(ctx, 60*time.Second, func() error {
			msgs, err := s.read(ctx, alerts.StreamName, []string{alerts.Subject(site, "passcode_lockout")})
			if err != nil {
				return err
			}
			if len(msgs) == 0 {
				return fmt.Errorf("no alert yet")
			}
			return nil
		})
		if err != nil {
			r.note("%s: no alert within 60 s of killing %s", site, victim.Name)
		} else {
			r.note("%s killed after the %d-th failure of %s; alert seen %s later", victim.Name, s.cfg.Threshold, site, fmtDuration(time.Since(killed)))
		}
		if err := victim.Start(); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		err = victim.WaitReady(wctx)
		cancel()
		if err != nil {
			return err
		}
		r.healedAt = time.Now()
	}
	return nil
}

func killAllReplicas(ctx context.Context, s *Suite, r *round) error {
	site, g, err := s.lockoutSite(ctx, r, "all-replicas")
	if err != nil {
		return err
	}
	lo := &lockout{site: site, passcodeID: g.State.PasscodeID}
	r.lockouts = append(r.lockouts, lo)
	if err := s.lockoutAttempts(ctx, r, 0, site); err != nil {
		return err
	}
	r.faultAt = time.Now()
	var wg sync.WaitGroup
	for _, rep := range s.Replicas {
		wg.Add(1)
		go func() { defer wg.Done(); rep.Kill() }()
	}
	wg.Wait()
	for _, rep := range s.Replicas {
		if err := rep.Start(); err != nil {
			return err
		}
	}
	r.healedAt = time.Now()
	wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	var mu sync.Mutex
	var alive, ready time.Time // the first replica's
	errs := make([]error, len(s.Replicas))
	for i, rep := range s.Replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = rep.WaitAlive(wctx); errs[i] != nil {
				return
			}
			mu.Lock()
			if alive.IsZero() {
				alive = time.Now()
			}
			mu.Unlock()
			if errs[i] = rep.WaitReady(wctx); errs[i] == nil {
				mu.Lock()
				if ready.IsZero() {
					ready = time.Now()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if alive.IsZero() {
		alive = time.Now()
	}
	// With no replica up the alert can only follow a restart: it is due
	// within the bound of the first replica that serves again.
	lo.allowed = alive.Sub(r.faultAt) + s.cfg.AlertWithin
	lo.why = fmt.Sprintf("%s after the first replica served again", fmtDuration(s.cfg.AlertWithin))
	r.note("first replica serving %s after the kill, ready (/readyz) %s after it", fmtDuration(alive.Sub(r.faultAt)), fmtDuration(ready.Sub(r.faultAt)))
	for i, err := range errs {
		if err != nil {
			r.fail("%s after the restart: %v", s.Replicas[i].Name, err)
		}
	}
	return nil
}
