// Package secrets implements handlers.SecretKeeper: it generates passcodes
// from crypto/rand without modulo bias, hashes them with HMAC-SHA256 for
// verification and seals them with AES-256-GCM for reveal.
//
// Keys come from configuration, from a keys file the replicas share
// (Config.File, made by InitFile), or from <dir>/keys.json, which is
// generated on first start (mode 0600, written atomically) and reused
// afterwards. Every key has an ID that events record next to the hash and
// the sealed copy; older keys stay in the file under their IDs so that
// rotating the current key still verifies and reveals the passcodes of
// earlier generations. A rotation (RotateFile) names the next keys and when
// they become current, so that every replica rereading the file (Reload)
// has them before any uses them; a running keeper never drops a key.
//
// The Registry (a KV bucket) records the IDs of the keys in use, so that a
// replica can refuse to start without one of them at a cost that does not
// grow with the event log; ScanLog fills it once for a log written before it.
//
// No error of this package holds a passcode or key material.
package secrets
