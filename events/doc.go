// Package events is the wire contract of enrollgate's event log: the envelope,
// the event payloads with their stable type names, the stream, subjects and
// headers, the encoding, and the one decoder of a stored message
// (DecodeStored).
//
// The event log is a public API that security tooling and later versions of
// this service read. Type strings and JSON field names are explicit constants
// and tags, never derived by reflection: add optional fields, never rename a
// field or change its meaning. This package imports only the standard library
// and ulid.
package events
