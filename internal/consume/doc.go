// Package consume is the consuming side of enrollgate's event log: watermill's
// message.Router feeding stored events, in stream order, to the projections,
// the lockout saga and the alert publisher.
//
// Each Handler gets its own durable JetStream pull consumer on the events
// stream (filtered on enrollgate.events.>, DeliverAll unless StartAfter, AckExplicit, unbounded
// MaxDeliver, MaxAckPending Config.MaxAckPending, a pinned priority group),
// its own NATS connection, and its own handler on the watermill Router
// (AddConsumerHandler: no publisher), so that the durables progress
// independently. A Handler returns nil to acknowledge an event; an error has
// it tried again, for as long as it takes, with the events after it held
// back. An event is never skipped: only a message that the service did not
// write (forged: no valid MAC, which the subscriber checks with the
// Router's Authenticator before it trusts any header, or unsigned and not
// an event) or a payload that cannot be decoded at all (poison) is moved to
// <DeadLetterPrefix>.<durable>, kept in the stream DeadLetterStream, logged
// once at error level, and acknowledged so that the handler goes on. A
// forged message never reaches a Handler; OnForged hears of it first. An
// authentic event of a type this build does not know is held, with the
// events after it, and tried again at RetryMaxInterval: neither skipped nor
// dead-lettered, it waits for a process that knows the type.
//
// # The Router and its middleware
//
// Per handler, outermost first:
//
//  1. dead letter (this package's PoisonQueue): a poison error from inside
//     is published to the dead-letter subject, with a Nats-Msg-Id derived
//     from the durable and the stream sequence (a redelivery stores no
//     second copy) and the reason, original subject, stream, sequence and
//     delivery count as headers, and the message is then acknowledged; a
//     failed publish is an error, so the poison message is tried again, never
//     dropped. watermill's PoisonQueue is not used: it would put the
//     watermill metadata on the dead letter, but no Nats-Msg-Id.
//  2. Retry: InProcessRetries more calls with a short backoff from
//     RetryInitialInterval, within the message's HandlerTimeout; never for a
//     poison error.
//  3. Recoverer, innermost, so that a panic is an error that Retry retries
//     (and that the dead letter never takes for poison).
//  4. The handler function: it decodes the message to an events.Record
//     (subject, stream sequence and payload; a payload that does not decode,
//     or an event stored on another site's subject, is a poison error) and
//     calls the Handler. Turning a JetStream message into a watermill message
//     never fails (see JETSTREAM-NOTES: an unmarshaler must not return an
//     error): whatever is wrong surfaces here, where it can be dead-lettered.
//
// # Why the subscriber is our own
//
// The Router reads a message.Subscriber of this package (subscriber.go) on
// nats.go's jetstream API. watermill-nats v2.1.3 does not fit: its
// pkg/jetstream subscriber races on Close (its monitor closes the output
// channel while the nats.go callback may still send on it) and passes on a
// nil message when its Unmarshaler returns an error; on a Nack it Naks to
// the server, so with more than one message in flight a failed event comes
// back after later ones (order then needs MaxAckPending 1: a round trip per
// event); it reports nothing in progress for the messages waiting behind the
// one being handled, and discards rather than gives back in order what it
// has on Close. Its pkg/nats subscriber builds on the legacy push
// subscriptions. The dead-letter publisher is watermill-nats
// pkg/jetstream's Publisher (it sets Nats-Msg-Id from metadata).
//
// # Guarantees, and how they are kept
//
//   - Stream order per durable, a redelivery being the same event again.
//     The server sends up to MaxAckPending messages ahead (a pull request is
//     always outstanding), always in stream order; the subscriber keeps what
//     arrived in a list sorted by stream sequence and hands the Router ONE
//     message at a time, waiting for its Ack or Nack before handing over the
//     next. That is watermill's Subscriber contract, and what keeps the order
//     although the Router runs every message on a goroutine of its own. On a
//     Nack (the handler failed after its in-process retries) the message and
//     everything after it stay held in the process (no JetStream Nak: a Nak'd
//     message would come back after later ones) and the same event is handed
//     over again after a delay doubling from RetryInitialInterval up to
//     RetryMaxInterval; meanwhile the subscriber reports what it holds in
//     progress every AckWait/4, so that the server redelivers none of it.
//   - Ack only after the handler succeeded: the JetStream Ack of a message
//     is sent after the Router's Ack of it, that is after the handler and
//     the middleware returned nil. Acks are plain Acks, not DoubleAcks: they
//     leave in order on the subscriber's connection, and a lost one only
//     redelivers an event that the idempotent handlers absorb (an event at
//     or below the last one acknowledged in this session is acked again
//     without being handed over).
//   - One process at a time: the consumer has a pinned priority group, so the
//     server delivers a durable's messages to one pinned process only, until
//     it has not pulled for PinnedTTL (= AckWait) or gave up the pin on Close.
//     AckWait is a few seconds, so that a durable shared by the replicas
//     (the lockout saga's, the alert publisher's) moves to another replica
//     within about AckWait when the pinned one is SIGKILLed: its pin expires
//     and what it held is redelivered.
//     Every session (start, rebind, a redelivery of an event not held here,
//     or the first message after this process was pinned) begins in
//     recovery: nothing is handed over until every message the server has
//     out unacknowledged for the durable is in this process's hands (held
//     count ≥ the consumer's NumAckPending); then they are sorted and handled
//     first. So what a previous process held, gave back or left to expire is
//     handled before anything later, whichever process gets it, whether the
//     pin expires before the redelivery or after it. A process in recovery
//     that sees another one pinned gives back what it holds, so that two
//     processes never wait for each other.
//   - A handler never runs concurrently with itself: within a process, one
//     message of a durable is out at a time; across processes, a message is
//     handed over only while the server surely leaves it to this process (a
//     lease: delivery or a flushed InProgress, plus AckWait less a margin,
//     renewed every AckWait/4 while the handler runs), and the handler's
//     context ends when the lease does; a process that cannot renew its
//     lease (cut off) abandons what it holds. While the lease is renewed, a
//     handler may run longer than AckWait without being redelivered: its
//     context ends after HandlerTimeout, which bounds the handler and its
//     in-process retries.
//   - On Close (the Router closes its subscribers) the message being handled
//     is waited for, its context cancelled, up to CloseTimeout; then the
//     subscriber gives back what it holds, in order and at once (Nak),
//     flushes its acks, closes the output channel and its connection, and
//     the Router unpins, so that the next process waits for neither AckWait
//     nor PinnedTTL.
//
// # Per-handler options
//
//   - OnlyTypes: authentic events of other types (by their
//     Enrollgate-Event-Type header, which the MAC covers) are acknowledged
//     in the subscriber without being decoded or handed to the Router; the
//     lockout saga and the alert publisher act on two and one of the six
//     types. An event without the header, or of a type this build does not
//     know, and every forged message, whatever type it claims, is handed
//     over as usual.
//
//   - OnForged: called for each forged message before it is dead-lettered;
//     the alert publisher's durable, shared by the replicas, raises one
//     event_log_tampered alert per message with it.
//
//   - WithCommit (group commit): the handler still gets one event per call,
//     through the Router, but only stages it; the subscriber calls the
//     handler's commit when it holds nothing further (so at low load after
//     every event), after CommitMax events, before retrying a failed event
//     and when it stops, and sends the JetStream acks of the staged events
//     only after commit returned nil. A failed commit is retried, with
//     nothing further handed over; at Close, events whose commit failed are
//     given back in order. The projector uses it: a backlog is written in
//     transactions of up to CommitMax events instead of one each.
//
//   - StartAfter and InactiveAfter: a durable created for the first time
//     (or again) starts after the handler's own checkpoint, and the server
//     deletes it when no process pulled from it for a while; an existing
//     durable keeps its position. The projector's per-instance durable uses
//     both.
//
// The Deduplicator middleware is not used: it is per process, and the
// handlers are idempotent instead.
//
// Durable names are constants of the callers. WARNING: renaming one creates a
// new consumer that starts from the first event again.
package consume
