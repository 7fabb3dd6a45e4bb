// Package auth holds enrollgate's bearer tokens and the principals they stand
// for.
//
// A token is 32 random bytes from crypto/rand, written "eg_" + base64url. It is
// shown once, when it is made; the tokens file (<data-dir>/tokens.json, mode
// 0600, replaced atomically) stores only its SHA-256, with the principal: the
// identity recorded as the actor of the events it causes, its role (admin,
// auditor or enrollment) and the sites it may see ("*" for all). Bootstrap
// tokens given by the operator on the command line are held in memory only.
//
// A principal that may not see a site is told the site does not exist (the
// HTTP API answers 404), so that site IDs cannot be probed; one that may see it
// but lacks the role is refused (403). Principal.CanSee and Role.Grants keep
// the two questions apart for that reason.
package auth
