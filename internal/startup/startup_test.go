package startup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/internal/natstest"
)

func TestPermanent(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, false},
		{nats.ErrNoResponders, false},
		{fmt.Errorf("ensure: %w", &jetstream.APIError{Code: 503, ErrorCode: 10008}), false},
		{fmt.Errorf("ensure: %w", &jetstream.APIError{Code: 400, ErrorCode: 10005}), false},
		{fmt.Errorf("ensure: %w", &jetstream.APIError{Code: 500, ErrorCode: 10009}), false},
		{fmt.Errorf("ensure: %w", jetstream.ErrStreamNotFound), false},
		{fmt.Errorf("ensure: %w", &jetstream.APIError{Code: 400, ErrorCode: 10065}), true},
		{fmt.Errorf("ensure: %w", &jetstream.APIError{Code: 500, ErrorCode: 10052}), true},
		{errors.New("bad config"), false},
	} {
		if got := Permanent(c.err); got != c.want {
			t.Errorf("Permanent(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestRetry(t *testing.T) {
	var logs natstest.LogBuffer
	log := zerolog.New(&logs)
	n := 0
	err := Retry(context.Background(), log, "make it", func(context.Context) error {
		if n++; n < 3 {
			return nats.ErrTimeout
		}
		return nil
	})
	if err != nil || n != 3 || strings.Count(logs.String(), "retrying") != 2 {
		t.Fatalf("err %v after %d calls; logs:\n%s", err, n, logs.String())
	}
	n = 0
	cfgErr := fmt.Errorf("update: %w", &jetstream.APIError{Code: 500, ErrorCode: 10052})
	if err := Retry(context.Background(), log, "make it", func(context.Context) error { n++; return cfgErr }); !errors.Is(err, cfgErr) || n != 1 {
		t.Fatalf("configuration error retried: %d calls, %v", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	t0 := time.Now()
	err = Retry(ctx, log, "never", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if err == nil || !strings.Contains(err.Error(), "start deadline") || time.Since(t0) > 3*time.Second {
		t.Fatalf("deadline: %v after %s", err, time.Since(t0))
	}
}
