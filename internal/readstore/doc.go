// Package readstore is enrollgate's durable read model: the passcode state of
// every site, its complete audit trail and its recent attempts, in one bbolt
// file (<data-dir>/readmodel.db), fed by internal/projector and read by the
// HTTP API.
//
// Layout (buckets):
//   - meta:         last_applied (the last stream sequence applied), format, open marker
//   - sites:        site -> projections.SiteState encoding
//   - log:          seq (8 bytes, big-endian) -> JSON projections.AuditEntry of every event,
//     appended in sequence order (dense pages, no write amplification), never pruned
//   - site_idx:     site 0x00 seq -> 'f' (failed attempt), 's' (succeeded attempt) or 'e'
//     (other): the site's audit trail, newest first by a reverse cursor. Attempts
//     are read through it (an attempt entry is derived from its audit entry by
//     projections.AttemptFromAudit), so nothing is stored twice; an attempts
//     query looks through at most Config.AttemptsScanLimit of a site's newest
//     events.
//
// The checkpoint is written in the same transaction as the data, so Apply is
// idempotent: records at or below the checkpoint are skipped. Because the
// stream sequence is global and increasing, this also gives per-site
// idempotency.
//
// Memory: the small per-site states are cached in memory (measured in
// TestMemoryPerSite, see README of the project); audit and attempts are read
// from the file, page by page, newest first, in O(limit).
//
// Durability: see Config.NoSync. The stream is the source of truth; the read
// model can always be rebuilt from it (internal/projector).
package readstore
