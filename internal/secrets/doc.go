// Package secrets implements handlers.SecretKeeper: it generates passcodes
// from crypto/rand without modulo bias, hashes them with HMAC-SHA256 for
// verification and seals them with AES-256-GCM for reveal.
//
// Keys come from configuration or from <dir>/keys.json, which is generated on
// first start (mode 0600, written atomically) and reused afterwards. Every key
// has an ID that events record next to the hash and the sealed copy; older
// keys stay in the file under their IDs so that rotating the current key
// still verifies and reveals the passcodes of earlier generations.
//
// No error of this package holds a passcode or key material.
package secrets
