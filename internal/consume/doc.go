// Package consume is the consuming side of enrollgate's event log: a watermill
// Router that feeds stored events, in stream order, to the projections, the
// lockout saga and the alert publisher.
//
// Each handler gets its own durable JetStream consumer on the events stream
// (filtered on enrollgate.events.>, DeliverAll, AckExplicit, unbounded
// MaxDeliver, MaxAckPending 1) and its own NATS connection. A handler returns
// nil to acknowledge an event; an error is retried in-process with growing
// delays (watermill's Retry middleware) and then redelivered by the server
// with NakWithDelay, growing up to Config.RetryMaxInterval. An event is never
// skipped: only a payload that cannot be decoded at all (poison) is moved to
// <DeadLetterPrefix>.<durable>, kept in the stream DeadLetterStream, logged
// once at error level, and acknowledged so that the handler goes on.
//
// # Why our own subscriber (and watermill-nats pkg/jetstream for publishing)
//
// The Router is watermill's message.Router with its middleware; the
// dead-letter publisher is watermill-nats v2.1.3 pkg/jetstream's Publisher
// (it sets Nats-Msg-Id from metadata, which is all a dead letter needs). The
// subscriber is a small one of our own on nats.go's jetstream package behind
// watermill's message.Subscriber interface (subscriber.go), because neither
// watermill-nats subscriber could be made to fit:
//
//   - pkg/jetstream (tried first, with our own ResourceInitializer,
//     Unmarshaler and NakDelay) has a data race on shutdown that -race found
//     in our tests: its monitor goroutine closes the output channel while the
//     nats.go callback goroutine may still be sending on it (handleMsg
//     selects on that send), which can also panic with "send on closed
//     channel" and crash the process when a message arrives during Close. It
//     cannot be fixed from outside. It also leaves an in-flight message
//     unacknowledged on Close, so that with MaxAckPending 1 the next process
//     waits a whole AckWait for it; and it returns a nil message with any
//     Unmarshaler error.
//   - pkg/nats builds on the legacy JetStreamContext push subscriptions
//     (deliver subjects, flow control, a durable derived from a prefix)
//     rather than the jetstream API the event store uses, and shares the
//     client-side ack timeout design.
//
// Ours runs one goroutine per subscription that pulls a message, hands it to
// the router, waits for the router's ack or nack, settles it with the server
// (DoubleAck, or NakWithDelay growing with the delivery count, never Term),
// and only then pulls the next; that goroutine alone sends on and closes the
// output channel. On Close it cancels the in-flight handler and Naks what it
// did not finish, so another instance gets it at once. A deleted consumer is
// created again, an interrupted pull is restarted.
//
// # Ordering
//
// The consumer has MaxAckPending 1: the server has at most one unacknowledged
// message out for it and delivers the next only after the ack, which the
// subscriber sends synchronously (DoubleAck, confirmed by the server). A
// Nak'd message is redelivered before any later one (verified: with a larger
// MaxAckPending the tests see a retried event come after later ones). The
// subscriber itself handles one message at a time, and every delivery of a
// durable runs under a one-slot semaphore, so that even a handler that
// outlives its AckWait (and gets redelivered) never runs concurrently with
// itself. A handler therefore sees a durable's events one at a time in stream
// order, a redelivery being the same event again. Several processes may run
// the same durable: the server still has one message out at a time.
//
// # Middleware order (outermost first)
//
// deliveryScope (semaphore, HandlerTimeout over the whole delivery),
// dead-letter (poison only), Retry (skips poison), Recoverer (innermost, so a
// panic becomes an error that Retry and the NakWithDelay redelivery see), then
// the decoding wrapper that calls the Handler. The Deduplicator middleware is
// not used: it is per process, and the handlers are idempotent instead.
//
// Durable names are constants of the callers. WARNING: renaming one creates a
// new consumer that starts from the first event again.
package consume
