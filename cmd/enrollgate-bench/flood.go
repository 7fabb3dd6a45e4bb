package main

import (
	"context"
	"fmt"
	"time"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/handlers"
	"github.com/enrollgate/enrollgate/internal/verifywire"
)

// floodSites are S9's sites on the main stack, refused without an append:
// one locked site, and per frontend a site with a throttled source of its
// own (a site's threshold of 3 makes a source's limit 2, and 16 sources on
// one site would lock it).
type floodSites struct {
	locked      string
	lockedPlain string
	throttled   []string
	plain       []string
	sources     []verifywire.SourceJSON
}

// newFloodSites locks and throttles over NATS through f, as an attacker
// would, and checks that the next attempt is refused. A failure window of
// 0 counts every failure since the generation, so neither ages out during
// a long run.
func newFloodSites(ctx context.Context, svc *handlers.Service, f frontend, gen *attemptGen) (*floodSites, error) {
	fs := &floodSites{locked: "flood-locked"}
	prepare := func(site string, threshold, wrong int, body func(string) []byte, then domain.Reason) (string, error) {
		res, err := svc.GeneratePasscode(ctx, handlers.GeneratePasscode{Site: events.Site(site), Actor: benchAdmin})
		if err != nil {
			return "", err
		}
		if _, err := svc.ChangeLockoutPolicy(ctx, handlers.ChangeLockoutPolicy{Site: events.Site(site), Actor: benchAdmin,
			MaxFailedAttempts: threshold}); err != nil {
			return "", err
		}
		plain := res.Passcode.Plain()
		for j := 1; j <= wrong+1; j++ {
			want, pass := domain.ReasonWrongPasscode, "wrong-"+plain
			if j > wrong {
				want, pass = then, plain
			}
			reply, err := f.verify(site, body(pass))
			if err != nil {
				return "", fmt.Errorf("S9 %s attempt %d: %w", site, j, err)
			}
			if reply.OK || reply.Reason != string(want) {
				return "", fmt.Errorf("S9 %s attempt %d: got %+v, want %s", site, j, reply, want)
			}
		}
		return plain, nil
	}
	var err error
	if fs.lockedPlain, err = prepare(fs.locked, lockoutAt, lockoutAt, gen.body, domain.ReasonDisabled); err != nil {
		return nil, err
	}
	for w := range frontends {
		site := fmt.Sprintf("flood-throttled-%02d", w)
		src := verifywire.SourceJSON{IP: fmt.Sprintf("192.0.2.%d", w+1), DeviceID: fmt.Sprintf("flood-dev-%02d", w),
			Platform: "ios", UserAgent: "MDM-Enroll/2.1 (iPhone; iOS 19.1)"}
		plain, err := prepare(site, 3, 2, func(p string) []byte { return gen.bodyFrom(p, src) }, domain.ReasonThrottled)
		if err != nil {
			return nil, err
		}
		fs.throttled, fs.plain, fs.sources = append(fs.throttled, site), append(fs.plain, plain), append(fs.sources, src)
	}
	return fs, nil
}

// floodLocked is S9 on the locked site: every frontend sends the right
// passcode from a new source, and every attempt must be refused as
// disabled.
func (r *runner) floodLocked(d time.Duration) (sample, error) {
	fs := r.flood
	return r.floodLoad(d, domain.ReasonDisabled, func(int) (string, []byte) {
		return fs.locked, r.gen.body(fs.lockedPlain)
	})
}

// floodThrottled is S9 from the throttled sources: frontend w sends its
// site's right passcode from its throttled source.
func (r *runner) floodThrottled(d time.Duration) (sample, error) {
	fs := r.flood
	return r.floodLoad(d, domain.ReasonThrottled, func(w int) (string, []byte) {
		return fs.throttled[w], r.gen.bodyFrom(fs.plain[w], fs.sources[w])
	})
}

// floodLoad runs the frontends for d, each sending next's attempts and
// checking that it is refused with want. appends_per_op counts what the
// store was asked to append meanwhile: 0 is the point of the scenario.
func (r *runner) floodLoad(d time.Duration, want domain.Reason, next func(w int) (string, []byte)) (sample, error) {
	st := r.main
	before := st.store.snapshot()
	s, err := closedLoop(frontends, d, func(w int) func() error {
		f := r.fronts[st][w]
		return func() error {
			site, body := next(w)
			reply, err := f.verify(site, body)
			if err != nil {
				return fmt.Errorf("S9 %s: %w", site, err)
			}
			if reply.OK || reply.Reason != string(want) {
				return fmt.Errorf("S9 %s: got ok=%v reason=%q, want %s", site, reply.OK, reply.Reason, want)
			}
			return nil
		}
	})
	c := st.store.snapshot().minus(before)
	s.Extra = c.extra(s.Ops)
	s.Extra["appends_per_op"] = float64(c.appends+c.conflicts) / float64(max(s.Ops, 1))
	return s, err
}
