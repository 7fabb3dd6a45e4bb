// Package servicetest builds a real handlers.Service for tests of the
// adapters that drive it: the JetStream event store on the test's server and
// a secret keeper with keys in a t.TempDir().
package servicetest
