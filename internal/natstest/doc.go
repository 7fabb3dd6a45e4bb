// Package natstest starts real in-process nats-servers with JetStream for
// tests: one per test, on a random loopback port, with a t.TempDir() store,
// shut down by the test's cleanup.
package natstest
