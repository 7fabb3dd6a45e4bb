package projector

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// benchEvents is the stream length of BenchmarkRebuild:
// ENROLLGATE_BENCH_EVENTS, default 100,000 (the full run uses 1,000,000).
func benchEvents(b *testing.B) int {
	if s := os.Getenv("ENROLLGATE_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("ENROLLGATE_BENCH_EVENTS=%q: want a positive integer", s)
		}
		return n
	}
	return 100_000
}

// rawReplay reads the whole stream with an ordered consumer, as fast as
// nats.go delivers it, reading each message's metadata (its sequence, which
// any consumer needs) and nothing else: the ceiling for a rebuild.
func rawReplay(ctx context.Context, js jetstream.JetStream, last uint64) (int, error) {
	stream, err := js.Stream(ctx, "ENROLLGATE_EVENTS")
	if err != nil {
		return 0, err
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"enrollgate.events.>"}})
	if err != nil {
		return 0, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return 0, err
	}
	defer it.Stop()
	n, bytes := 0, 0
	for {
		msg, err := it.Next()
		if err != nil {
			return n, err
		}
		md, err := msg.Metadata()
		if err != nil {
			return n, err
		}
		n++
		bytes += len(msg.Data())
		if md.Sequence.Stream >= last {
			return n, nil
		}
	}
}

// BenchmarkRebuild compares, in the same run, a rebuild of the read model
// (decode, fold, audit and attempts written to bbolt in batched
// transactions) with a raw ordered-consumer replay of the same stream: N
// events over 1,000 sites. Run with -benchtime=3x; each iteration measures
// both, and the best of each is reported (noise on a shared machine only
// slows a run down).
func BenchmarkRebuild(b *testing.B) {
	n := benchEvents(b)
	e := newEnv(b)
	w := newWorkload(42, 1000)
	start := time.Now()
	e.publishBulk(b, w, n)
	b.Logf("appended %d events over 1000 sites in %s", n, time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	dir := b.TempDir()
	var bestRaw, bestRebuild time.Duration
	b.ResetTimer()
	for i := range b.N {
		t, c := time.Now(), cpuTime(b)
		got, err := rawReplay(ctx, e.js, uint64(n))
		if err != nil || got != n {
			b.Fatalf("raw replay: %d of %d: %v", got, n, err)
		}
		raw, rawCPU := time.Since(t), cpuTime(b)-c

		t, c = time.Now(), cpuTime(b)
		st, rep, err := Rebuild(ctx, e.js, storeConfig(""), filepath.Join(dir, fmt.Sprintf("rebuild-%d.db", i)), e.cfg(Config{BatchSize: benchBatch(b)}))
		if err != nil {
			b.Fatal(err)
		}
		rebuild, rebuildCPU := time.Since(t), cpuTime(b)-c
		if rep.Applied != uint64(n) || st.LastApplied() != uint64(n) {
			b.Fatalf("rebuild applied %d, last %d, want %d", rep.Applied, st.LastApplied(), n)
		}
		fi, _ := os.Stat(st.Path())
		_ = st.Close()
		b.Logf("iteration %d: raw %s (%.0f events/s, %.1f CPU-µs/event), rebuild %s (%.0f events/s, %.1f CPU-µs/event; %s in store transactions), file %d MB",
			i, raw.Round(time.Millisecond), float64(n)/raw.Seconds(), rawCPU.Seconds()*1e6/float64(n),
			rebuild.Round(time.Millisecond), float64(n)/rebuild.Seconds(), rebuildCPU.Seconds()*1e6/float64(n),
			rep.ApplyTime.Round(time.Millisecond), fi.Size()>>20)
		if bestRaw == 0 || raw < bestRaw {
			bestRaw = raw
		}
		if bestRebuild == 0 || rebuild < bestRebuild {
			bestRebuild = rebuild
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/bestRaw.Seconds(), "raw-events/s")
	b.ReportMetric(float64(n)/bestRebuild.Seconds(), "rebuild-events/s")
	b.ReportMetric(bestRaw.Seconds()/bestRebuild.Seconds(), "rebuild/raw")
}

// benchBatch is the rebuild's batch size: ENROLLGATE_BENCH_BATCH, default
// the Config default.
func benchBatch(b *testing.B) int {
	if s := os.Getenv("ENROLLGATE_BENCH_BATCH"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("ENROLLGATE_BENCH_BATCH=%q: want a positive integer", s)
		}
		return n
	}
	return 0
}

// cpuTime is the CPU time (user and system) the process has used, the
// in-process nats-server included: on a shared machine it is steadier than
// wall time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
