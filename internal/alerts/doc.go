// Package alerts publishes enrollgate's security alerts: CloudEvents 1.0 in
// structured JSON on enrollgate.alerts.<site>.<kind>, kept in the JetStream
// stream ENROLLGATE_ALERTS so that security tooling can replay them, and
// received live by plain core NATS subscribers of enrollgate.alerts.>.
//
// The first alert is the passcode lockout (docs/alerts/
// passcode-lockout.schema.json describes it). Publisher.Handle is a
// consume.Handler for the event log: on a PasscodeDisabled with reason
// lockout it publishes one alert, whose CloudEvent id is the disable event's
// ID and whose Nats-Msg-Id is derived from it, so that a redelivered or
// replayed disable never makes a second alert: the stream's duplicate window
// drops a resend within it, and a check of the last alert on the site's
// subject covers a redelivery after the window.
//
// Publisher.Tampered is the consume OnForged callback of the same durable:
// for every message on the event log that the service did not write (no
// valid MAC) it publishes one alert of kind event_log_tampered
// (docs/alerts/event-log-tampered.schema.json), whose id and Nats-Msg-Id
// derive from the message's stream sequence; one durable shared by all
// replicas raises it, so N replicas raise one alert.
//
// It publishes with nats.go's jetstream package rather than a watermill
// publisher, because it needs the PubAck (a duplicate is reported there) and
// a context on the publish.
package alerts
