// Package consume is the consuming side of enrollgate's event log:
// watermill's message.Router feeding stored events to the lockout saga and
// the alert publisher, whose work is idempotent and independent of order,
// and running the projector's own ordered consumer alongside (Router.Go).
//
// Each Handler gets a durable JetStream pull consumer on the events stream
// (filtered on enrollgate.events.>, DeliverAll, AckExplicit, AckWait a few
// seconds, unbounded MaxDeliver, MaxAckPending Config.MaxAckPending), shared
// by every replica that adds the same durable, its own NATS connection, and
// its own handler on the watermill Router (AddConsumerHandler: no
// publisher). The subscriber (subscriber.go) emits the messages as they
// come; the Router runs each on a goroutine of its own.
//
// # The Router and its middleware
//
// Per handler, outermost first:
//
//  1. dead letter (deadletter.go): a poison error from inside is published
//     to <DeadLetterPrefix>.<durable>, kept in DeadLetterStream, with a
//     Nats-Msg-Id derived from the durable and the stream sequence (a
//     redelivery stores no second copy) and the reason, original subject,
//     stream, sequence and delivery count as headers; the message is then
//     acknowledged. A failed publish is an error, so the poison message is
//     delivered again, never dropped. watermill's PoisonQueue sets no
//     Nats-Msg-Id. Any other error is logged here, once per delivery.
//  2. Retry: InProcessRetries more calls with a short backoff, within the
//     message's HandlerTimeout; never for poison or an unknown type.
//  3. Recoverer, innermost, so that a panic is an error that Retry retries
//     (and that the dead letter never takes for poison).
//  4. The handler function: it decodes the message to an events.Record (a
//     payload that does not decode, or an event stored on another site's
//     subject, is poison) and calls the Handler. A message the service did
//     not write (forged: no valid MAC, which the subscriber checks with the
//     Authenticator before it trusts any header, or unsigned and not an
//     event) never reaches the Handler: OnForged hears of it, then it is
//     dead-lettered. Turning a JetStream message into a watermill message
//     never fails (JETSTREAM-NOTES): whatever is wrong surfaces here.
//
// # Guarantees, and how they are kept
//
//   - Ack only after the work: the JetStream Ack of a message is sent after
//     the Router's Ack of it, that is after the handler and the middleware
//     returned nil. Acks are plain Acks; a lost one redelivers an event that
//     the idempotent handlers absorb.
//   - Nothing skipped: after a Nack (the handler failed after its in-process
//     retries) the message is Nak'd with a delay doubling with its delivery
//     count from RetryInitialInterval up to RetryMaxInterval, and comes back
//     for as long as it takes. An authentic event of a type this build does
//     not know is neither skipped nor dead-lettered: it comes back until a
//     process that knows the type handles it.
//   - A long handler is not redelivered meanwhile: the subscriber reports
//     its message in progress every AckWait/4 until the Router settles it;
//     HandlerTimeout ends the message's context.
//   - Failover: a message a SIGKILLed replica had out is redelivered to
//     another replica on the same durable once AckWait has passed.
//   - Close (the Router closes its subscribers): nothing more is handed
//     over, what nats.go still buffers is given back at once (Nak), the
//     messages handed over are waited for up to CloseTimeout (then their
//     contexts end and they are Nak'd), and the Go functions are stopped and
//     waited for.
//
// Handlers run concurrently (up to MaxAckPending per durable) and in no
// particular order: the saga's disables are decided by the domain under
// optimistic concurrency, the alerts carry a Nats-Msg-Id.
//
// # Per-handler options
//
//   - OnlyTypes: authentic events of other types (by their
//     Enrollgate-Event-Type header, which the MAC covers) are acknowledged
//     in the subscriber without being decoded or handed to the Router. An
//     event without the header, or of a type this build does not know, and
//     every forged message, whatever type it claims, is handed over as usual.
//   - OnForged: called for each forged message before it is dead-lettered;
//     the alert publisher's durable, shared by the replicas, raises one
//     event_log_tampered alert per message with it.
//
// A durable of an older version (with a pinned priority group) is updated
// in place at AddHandler and keeps its position. The Deduplicator
// middleware is not used: it is per process, and the handlers are
// idempotent instead.
//
// Durable names are constants of the callers. WARNING: renaming one creates a
// new consumer that starts from the first event again.
package consume
