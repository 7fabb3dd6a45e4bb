// Package archtest holds the test that keeps the core packages free of
// infrastructure imports.
package archtest
