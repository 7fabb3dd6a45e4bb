// Package verifyapi is the NATS verify endpoint: a micro service named
// "enrollgate" answering requests on enrollgate.verify.<site> with a verdict.
// The request and reply and their strict decoder are internal/verifywire's,
// shared with the HTTP verify route.
//
// A malformed request is answered with a micro error of code 400 and never
// reaches the handlers, so it is never counted as an attempt. No error, reply
// or log line of this package holds the passcode.
package verifyapi
