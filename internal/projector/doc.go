// Package projector feeds the read model (internal/readstore) from the event
// stream, live and in replays, with one piece of code: an ordered consumer
// from the store's checkpoint (replay), decoding and applying in stages, many
// events to a read-store transaction.
//
//   - Live: Projector.Register has the consume router run the projection
//     (Router.Go): it follows the stream from the checkpoint without end and
//     writes what arrived whenever the stream has nothing more, so one event
//     per transaction when idle and up to BatchSize under load. No durable
//     consumer: the checkpoint in the read model is the position. Poison and
//     forged messages are dead-lettered, as the router does for its
//     handlers, before the projection passes them. Lag (0: ready) compares
//     the position with the stream's last sequence.
//   - Catch-up and rebuild: CatchUp replays from the store's checkpoint to
//     the stream's last sequence; Rebuild does that into a fresh file from
//     sequence 1. Forged messages (not written by the service: Config.Auth
//     decides, by the same rules as the live router) and poison are skipped
//     and reported (Report.Poison), never fatal.
//   - At an authentic event of a type this build does not know, a replay
//     applies what came before and stops (Report.Stopped), so that the read
//     model stays a true prefix of the log; the live projection holds there
//     until the process is upgraded.
//   - Open: OpenStore opens the durable read model, rebuilds it when it is
//     corrupt or was left unsynced by an OS crash, and catches it up, so that
//     after a restart the projections are ready without replaying history.
package projector
