// Package verifywire is the wire format of verify, shared by its two
// transports (internal/verifyapi on NATS, internal/httpapi on HTTP): the
// request and reply types, the strict request decoder, and the subject the
// NATS endpoint answers on. It imports neither NATS nor net/http, so that
// both transports accept exactly the same requests and answer with the same
// JSON, and neither depends on the other.
//
// Every decoding error wraps domain.ErrInvalid and never quotes the request,
// so that a passcode typed into the wrong place is not echoed.
package verifywire
