// Package auth holds enrollgate's bearer tokens and the principals they stand
// for.
//
// A token is 32 random bytes from crypto/rand, written "eg_" + base64url. It is
// shown once, when it is made; the store keeps only its SHA-256, with the
// principal: the identity recorded as the actor of the events it causes, its
// role (admin, auditor or enrollment) and the sites it may see ("*" for all),
// and who made it when. Bootstrap tokens given by the operator on the command
// line are held in memory only, per process.
//
// Stored tokens live in the JetStream KV bucket ENROLLGATE_TOKENS (Share),
// which every replica watches: a token created or revoked on one holds on all
// within moments. Keys: tok.<token ID> (the record), used.<token ID> (its last
// use), first-admin (taken once, by whichever first gave the cluster tokens:
// the first start's admin token, or an import of a tokens.json file). A
// key once written is never written again, so a revoked token cannot come
// back. A use is recorded in memory on each authentication and written to
// the bucket at most once per interval per token, never per request. A
// tokens file (Config.File, the format of the former <data-dir>/tokens.json)
// serves a single process without a bucket: tests and tools.
//
// A principal that may not see a site is told the site does not exist (the
// HTTP API answers 404), so that site IDs cannot be probed; one that may see it
// but lacks the role is refused (403). Principal.CanSee and Role.Grants keep
// the two questions apart for that reason. Managing tokens needs an admin of
// every site (Principal.ManagesTokens): a token it made could reach any site.
package auth
