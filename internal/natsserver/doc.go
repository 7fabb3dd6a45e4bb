// Package natsserver runs the embedded nats-server with JetStream that
// enrollgate starts when no external NATS is configured: frontends and
// security tooling connect to its client port, the service itself too.
//
// The server's log goes to zerolog through Logger, which never exits the
// process: the server's own logger and zerolog's Fatal both would, and a
// fatal server condition must reach the caller as an error instead.
package natsserver
