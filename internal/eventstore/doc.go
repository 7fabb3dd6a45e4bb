// Package eventstore is the event log of enrollgate on NATS JetStream: the
// stream events.StreamName (ENROLLGATE_EVENTS) with one subject per site
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
// request/reply; the appends of different sites run concurrently on the one
// connection, and a site's appends stay in order because the handlers
// serialise its commands.
//
// Load reads a site's events after a sequence: a few single-message gets for
// a short gap (the common catch-up after a conflict), an ordered consumer for
// a long one (a cold cache). Gets are direct gets on one replica and go to
// the stream leader on a replicated stream, whose followers would answer
// direct gets a few milliseconds behind (StreamConfig allows direct gets on
// one replica only). EnsureStream creates or updates the stream; it is what
// the composition root calls at start-up.
//
// # Authenticity
//
// Every message Append stores carries a MAC (header Enrollgate-Mac:
// "<key-id>:<base64>"), HMAC-SHA256 under the event-MAC key the replicas
// share (derived from the MAC key keyID, see internal/secrets), over the
// subject, the event ID, the type, the expectation and the payload, each
// length-prefixed. Authenticator checks it for the store, the consumers
// (internal/consume) and the replays (internal/projector) alike, and accepts
// any key the keeper knows, so that a rotation keeps older events valid.
// Covering the expectation, which the server keeps on the stored message,
// makes a copy of a signed event useless: sent again as it is, the server
// refuses it (the site has moved on); changed, its MAC fails.
//
// A message without a MAC is a legacy event when it was stored before the
// boundary that EnsureStream records in the stream's metadata
// (MetaMACRequiredFrom: 1 for a new stream, the last sequence + 1 the first
// time this version starts on an older one), and forged after it. Load
// leaves out whatever the service did not write (no valid MAC, or unsigned
// and not an event of the site), ending with a gap record when that is the
// last thing on the subject, so that the next append's expectation is
// right; it never fails on such a message. An authentic event of a type
// this build does not know is an error wrapping handlers.ErrUpgradeRequired.
//
// The package storetest holds the contract test suite of handlers.EventStore.
package eventstore
