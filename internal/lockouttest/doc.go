// Package lockouttest holds the integration tests of the lockout (issue 4)
// against a real in-process JetStream: the JetStream event store, several
// handlers.Service replicas sharing it, and the consume.Router running the
// lockout saga and the alert publisher on their durable consumers. It has no
// code of its own outside its tests.
package lockouttest
