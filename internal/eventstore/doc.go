// Package eventstore is the event log of enrollgate on NATS JetStream: the
// stream ENROLLGATE_EVENTS with one subject per site
// (enrollgate.events.<site>), and Store, the handlers.EventStore that appends
// with optimistic concurrency and loads a site's history.
//
// Append publishes with Nats-Msg-Id = the event ID and
// Nats-Expected-Last-Subject-Sequence = the sequence the deciding command saw,
// so that two replicas of the service deciding on the same site cannot both
// store: the loser gets an error wrapping handlers.ErrConflict. A publish
// whose answer was lost is sent again, identical; when that second answer is
// a conflict (one replica) or a duplicate (three replicas), the store finds
// out whether the first send was stored and then reports success with its
// sequence, so that a timeout never turns into a second event. A send is a
// request/reply by default, or, with Config.AsyncPublish, PublishMsgAsync
// and a wait for that send's own ack; either way the appends of different
// sites run concurrently on the one connection, and a site's appends stay in
// order because the handlers serialise its commands.
//
// Load reads a site's events after a sequence: a few single-message gets for
// a short gap (the common catch-up after a conflict), an ordered consumer for
// a long one (a cold cache). Gets are direct gets on one replica and go to
// the stream leader on a replicated stream, whose followers answer direct
// gets a few milliseconds behind. EnsureStream creates or updates the stream; it is what
// the composition root calls at start-up.
//
// The package storetest holds the contract test suite of handlers.EventStore.
package eventstore
