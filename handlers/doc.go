// Package handlers runs enrollgate's commands: GeneratePasscode,
// DisablePasscode, VerifyPasscode, RevealPasscode, ChangeLockoutPolicy,
// ExpirePasscode and SimulateLockout, one file each, grouped in Service; and
// the lockout saga, which only issues commands.
//
// A command loads the site's aggregate (cached per process with its last
// stream sequence, caught up only when stale), decides, and appends the event
// with optimistic concurrency, retrying with jitter on a conflict. Commands on
// one site are serialised in-process, so optimistic concurrency is the safety
// net between service replicas rather than the normal path.
//
// The interfaces this package needs (event store, secret keeper, clock, IDs)
// are declared here, where they are used. It imports no NATS, watermill,
// logging or HTTP package, and never logs: errors go back to the caller.
package handlers
