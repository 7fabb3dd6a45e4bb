// Package natstest starts real in-process nats-servers with JetStream for
// tests: one per test, on a random loopback port, with a t.TempDir() store,
// shut down by the test's cleanup; and 3-node clusters of nats-server
// processes (StartCluster).
package natstest
