// Package metrics is what enrollgate reports to Prometheus (client_golang):
// verify verdicts and latencies per transport, event-log appends and their
// conflicts, lockouts and alerts, the consumers' lag, the read model's
// sequence and the build. Decorators around the handlers' ports and the
// consumers' handlers count at the edges, so the core stays free of it.
package metrics
