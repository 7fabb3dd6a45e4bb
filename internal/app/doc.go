// Package app is enrollgate's composition root: Start wires the adapters
// together into the running service (embedded or external NATS, the event
// store, keys and tokens, the consumers, the verify endpoint and the HTTP
// API) and Close stops them in order; Rebuild rebuilds the read model on
// the same wiring without serving.
//
// `enrollgate serve`, `projections rebuild`, the bench and the end-to-end
// tests all run the service through it; flags and environment stay the
// CLI's (cmd/enrollgate fills Config).
package app
