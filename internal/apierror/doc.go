// Package apierror is the one error vocabulary of the service's APIs: the
// classes of failure, the stable codes, and the one table (Of) from the
// errors of every layer (domain, handlers, the token store, NATS, deadlines)
// to a class, a code and a detail safe to show. Each transport maps a class
// in one place: Class.HTTPStatus for internal/httpapi (with the code as
// the problem type), Class.MicroCode for internal/verifyapi.
package apierror
