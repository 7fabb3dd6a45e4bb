// Package internal holds enrollgate's adapters, one package per dependency:
// the JetStream event store, the embedded nats-server, the secrets, the HTTP
// API, the NATS verify endpoint, the watermill consumers, and test helpers.
package internal
