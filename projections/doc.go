// Package projections holds enrollgate's read models as plain types and pure
// logic: the passcode state document of a site (SiteState, StateDoc), the
// audit trail entry of an event (AuditEntry) and the recent-attempt entry of
// an enrollment attempt (AttemptEntry).
//
// It is pure like domain: no NATS, watermill, logging or HTTP, no clock (the
// time of a query is passed in). Storage and feeding live in
// internal/readstore and internal/projector.
//
// SiteState folds a site's events into the aggregate's own domain.FailureLog
// (failures counted in the window at query time, the lock set by the failure
// that reaches the threshold, per-source throttling), so that the document
// shows what the aggregate decides, and keeps beside it only the display
// fields: no hashes, no sealed copies, no attempt-ID log. A test folds random
// histories into both and compares the documents.
package projections
