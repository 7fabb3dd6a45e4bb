// Command enrollgate-bench measures enrollgate against raw JetStream in the
// same run. It starts its own embedded JetStream servers on 127.0.0.1 (temp
// stores, file storage), then runs interleaved rounds: each round runs the
// raw nats.go baselines and the scenarios through the real service back to
// back, so that every scenario is compared with a baseline measured moments
// before it on the same noisy machine. Only those same-run ratios are stable
// on a shared 2-core machine; absolute rates are shown for context.
//
// Files, one concern each: main.go (flags, the round loop, profiles),
// env.go (servers and the in-process service stack), raw.go (nats.go-only
// baselines), bare.go (the bare shape of a verify: the ceiling the service
// rows are read against), load.go (frontends and the closed-loop verify
// load), scenarios.go (the rows, their targets, S1-S8), flood.go (S9),
// stats.go (percentiles, ratios, targets, table and JSON).
//
// Usage: go run ./cmd/enrollgate-bench [-quick] [-rounds 5] [-scenarios S1,S3]
// [-out bench-results.json] [-cpuprofile dir]. See docs/benchmarks.md.
package main
