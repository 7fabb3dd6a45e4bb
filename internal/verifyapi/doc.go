// Package verifyapi is the NATS verify endpoint: a micro service named
// "enrollgate" answering requests on enrollgate.verify.<site> with a verdict.
// It also holds the wire types and the strict request decoder that the HTTP
// verify route reuses, so that both transports accept exactly the same
// requests and answer with the same JSON.
//
// A malformed request is answered with a micro error of code 400 and never
// reaches the handlers, so it is never counted as an attempt. No error, reply
// or log line of this package holds the passcode.
package verifyapi
