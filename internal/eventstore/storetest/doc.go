// Package storetest is the contract test suite of handlers.EventStore: what
// every event store must do, run against a real store (for the JetStream one,
// a real in-process server).
package storetest
