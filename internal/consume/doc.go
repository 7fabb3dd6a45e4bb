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
// # Why watermill-nats pkg/jetstream
//
// Of watermill-nats v2.1.3's two subscribers, pkg/jetstream (built on nats.go's
// jetstream package, the API the event store uses too) lets us create the
// consumer ourselves through SubscriberConfig.ResourceInitializer, so the
// durable name, FilterSubject, AckWait, MaxDeliver and MaxAckPending are
// exactly ours and the stream is never derived from the topic. pkg/nats builds
// on the legacy JetStreamContext push subscriptions (deliver subjects, flow
// control, a durable derived from a prefix) which we would have to configure
// through SubOpts with less control. The defaults of pkg/jetstream that do not
// fit are all replaced here: the ResourceInitializer (it returns the durable
// consumer created by AddHandler, never deletes it), the Unmarshaler (ours
// never returns an error: the library dereferences the nil message it would
// return), the NakDelay (exponential, never Term), and the logger (its "got
// msg" line per message goes to debug).
//
// # Ordering
//
// The consumer has MaxAckPending 1: the server has at most one unacknowledged
// message out for it and delivers the next only after the ack, which the
// subscriber sends synchronously (DoubleAck, confirmed by the server). A
// Nak'd message is redelivered before any later one. In addition every
// delivery of a durable runs under a one-slot semaphore, so that even a
// handler that outlives its AckWait (and gets redelivered) never runs
// concurrently with itself. A handler therefore sees a durable's events one at
// a time in stream order, a redelivery being the same event again.
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
