// Package projector feeds the read model (internal/readstore) from the event
// stream.
//
//   - Live: Projector.Register adds the durable consumer "projections" to the
//     consume router (watermill's Router): each event is applied, with the
//     checkpoint, in its own read-store transaction, and the router
//     acknowledges it only after that transaction committed. Poison messages
//     are dead-lettered by the router and never reach the read model.
//   - Catch-up and rebuild: CatchUp replays the stream with an ordered
//     consumer from the store's checkpoint to the stream's last sequence, in
//     large transactions, decoding and applying in two goroutines; Rebuild
//     does that into a fresh file from sequence 1. Forged messages (not
//     written by the service: Config.Auth decides, by the same rules as the
//     live router) and poison are skipped and reported (Report.Poison),
//     never fatal. At an authentic event of a type this build does not know
//     a replay applies what came before and stops (Report.Stopped), so that
//     the read model stays a true prefix of the log; the live consumer then
//     holds at the same event until the process is upgraded.
//   - Open: OpenStore opens the durable read model, rebuilds it when it is
//     corrupt or was left unsynced by an OS crash, and catches it up, so that
//     after a restart the projections are ready without replaying history.
//   - Swap: Projector.Swap installs a rebuilt store without losing an event
//     that the live consumer delivered meanwhile.
package projector
