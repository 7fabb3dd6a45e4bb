// Package consume is the consuming side of enrollgate's event log: a watermill
// Router that feeds stored events, in stream order, to the projections, the
// lockout saga and the alert publisher.
//
// Each handler gets its own durable JetStream pull consumer on the events
// stream (filtered on enrollgate.events.>, DeliverAll, AckExplicit, unbounded
// MaxDeliver, MaxAckPending Config.MaxAckPending, a pinned priority group)
// and its own NATS connection, so that the durables progress independently.
// A Handler returns nil to acknowledge an event; a BatchHandler gets the
// consecutive events that have arrived (up to Config.MaxBatch) and its nil
// acknowledges all of them. An error is retried in-process, with delays
// doubling from RetryInitialInterval up to RetryMaxInterval, for as long as
// it takes. An event is never skipped: only a payload that cannot be decoded
// at all (poison) is moved to <DeadLetterPrefix>.<durable>, kept in the
// stream DeadLetterStream, logged once at error level, and acknowledged so
// that the handler goes on.
//
// # Guarantees, and how they are kept
//
//   - Stream order per durable, a redelivery being the same event again.
//     The server sends up to MaxAckPending messages ahead (a pull request is
//     always outstanding), always in stream order; the subscriber keeps what
//     arrived in a list sorted by stream sequence and hands it over from the
//     front. When a handler fails, the failing event and everything after it
//     stay held in the process (no Nak: a Nak'd message would come back after
//     later ones), and the subscriber reports them in progress every
//     AckWait/4 so that the server redelivers none of them meanwhile.
//   - Ack only after the handler succeeded: each message is acknowledged
//     after the call that handled it returned nil (for a BatchHandler: after
//     the call for the whole batch; a failed batch is handed over again one
//     event at a time, so that those before the failing one are acknowledged
//     and it is retried alone). Acks are plain Acks, not DoubleAcks: they
//     leave in order on the subscriber's connection, and a lost one only
//     redelivers an event that the idempotent handlers absorb (an event at or
//     below the last one handled in this session is acked again unhandled).
//   - One process at a time: the consumer has a pinned priority group, so the
//     server delivers a durable's messages to one pinned process only, until
//     it has not pulled for PinnedTTL (= AckWait) or gave up the pin on Close.
//     Every session (start, rebind, or a redelivery of an event not held here)
//     begins in recovery: nothing is handled until every message the server
//     has out unacknowledged for the durable is in this process's hands (held
//     count ≥ the consumer's NumAckPending); then they are sorted and handled
//     first. So what a previous process held, gave back or left to expire is
//     handled before anything later, whichever process gets it.
//   - A handler never runs concurrently with itself: one goroutine per
//     durable calls it; across processes, a handler is called only while the
//     server surely leaves the events to this process (a lease: delivery or a
//     flushed InProgress, plus AckWait less a margin, covering HandlerTimeout);
//     a process that cannot renew its lease (cut off) abandons what it holds.
//     The handler's context is cancelled after HandlerTimeout.
//   - On Close the subscriber gives back what it holds, in order and at once
//     (Nak), flushes its acks and unpins, so that the next process does not
//     wait for AckWait or PinnedTTL.
//
// # Why not watermill's Router
//
// The Router used to be watermill's message.Router with Retry and Recoverer
// middleware, on a subscriber of our own with MaxAckPending 1 and DoubleAck.
// That design handled an event per round trip and per goroutine and channel
// handoff, and could not batch: in the benchmark (docs/benchmarks.md) the
// three durables together did 1,000-2,000 events/s under load, and
// BenchmarkConsumeThroughput measured it against this one in the same run.
// watermill's router also starts a goroutine per message, so it cannot hand
// over several messages of one durable in order. The retry and panic
// recovery it gave are done here directly (a panic is an error that is
// retried). The dead-letter publisher is still watermill-nats v2.1.3
// pkg/jetstream's Publisher (it sets Nats-Msg-Id from metadata). The
// subscribers of watermill-nats do not fit either: pkg/jetstream races on
// Close (its monitor closes the output channel while the nats.go callback
// may still send on it) and returns a nil message with an Unmarshaler error;
// pkg/nats builds on the legacy push subscriptions.
//
// The Deduplicator middleware is not used: it is per process, and the
// handlers are idempotent instead.
//
// Durable names are constants of the callers. WARNING: renaming one creates a
// new consumer that starts from the first event again.
package consume
