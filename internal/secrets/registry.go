package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
)

// RegistryBucket is the KV bucket that records every key the service may
// have named in the event log: a replica records its keys there before it
// uses them, and a replica that lacks one of them refuses to start. It
// holds key IDs only, never key material. WARNING: names stored data.
const RegistryBucket = "ENROLLGATE_KEY_IDS"

// registryScanned records that the event log written before the registry
// existed was scanned for the keys it names (the value: up to which stream
// sequence). Not a key reference: those are "<kind>.<id>".
const registryScanned = "scanned"

// Registry is the record of the keys in use, shared by every replica.
type Registry struct{ kv jetstream.KeyValue }

// RegistryConfig is the bucket's configuration.
func RegistryConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      RegistryBucket,
		Description: "enrollgate: IDs of the keys named by the event log (no key material)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// OpenRegistry creates the bucket, or updates it to RegistryConfig.
func OpenRegistry(ctx context.Context, js jetstream.JetStream, replicas int) (*Registry, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, RegistryConfig(replicas))
	if err != nil {
		return nil, fmt.Errorf("secrets: key registry %s: %w", RegistryBucket, err)
	}
	return &Registry{kv: kv}, nil
}

type registryEntry struct {
	RecordedAt time.Time `json:"recorded_at"`
	By         string    `json:"by,omitempty"`
}

func refKey(r KeyRef) string { return r.Kind + "." + r.ID }

// Register records refs as in use (by names the recording process), and
// returns those that no one had recorded before.
func (g *Registry) Register(ctx context.Context, refs []KeyRef, by string) (created []KeyRef, err error) {
	val, _ := json.Marshal(registryEntry{RecordedAt: time.Now().UTC(), By: by})
	for _, r := range refs {
		_, err := g.kv.Create(ctx, refKey(r), val)
		switch {
		case err == nil:
			created = append(created, r)
		case errors.Is(err, jetstream.ErrKeyExists):
		default:
			return created, fmt.Errorf("secrets: record %s in %s: %w", r, RegistryBucket, err)
		}
	}
	return created, nil
}

// Forget removes refs, which this process recorded and never used (a start
// that failed after Register).
func (g *Registry) Forget(ctx context.Context, refs []KeyRef) error {
	var errs []error
	for _, r := range refs {
		if err := g.kv.Purge(ctx, refKey(r)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Missing returns the recorded keys for which has is false, sorted.
func (g *Registry) Missing(ctx context.Context, has func(KeyRef) bool) ([]KeyRef, error) {
	lister, err := g.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("secrets: list %s: %w", RegistryBucket, err)
	}
	defer func() { _ = lister.Stop() }()
	var missing []KeyRef
	for k := range lister.Keys() {
		kind, id, ok := strings.Cut(k, ".")
		if !ok || (kind != kindMAC && kind != kindSeal) {
			continue
		}
		if r := (KeyRef{kind, id}); !has(r) {
			missing = append(missing, r)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("secrets: list %s: %w", RegistryBucket, err)
	}
	sort.Slice(missing, func(i, j int) bool { return refKey(missing[i]) < refKey(missing[j]) })
	return missing, nil
}

// Scanned reports whether the event log before the registry was scanned.
func (g *Registry) Scanned(ctx context.Context) (bool, error) {
	_, err := g.kv.Get(ctx, registryScanned)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("secrets: read %s/%s: %w", RegistryBucket, registryScanned, err)
}

// MarkScanned records that the log up to seq was scanned.
func (g *Registry) MarkScanned(ctx context.Context, seq uint64) error {
	if _, err := g.kv.Put(ctx, registryScanned, []byte(strconv.FormatUint(seq, 10))); err != nil {
		return fmt.Errorf("secrets: write %s/%s: %w", RegistryBucket, registryScanned, err)
	}
	return nil
}

// Scan is what ScanLog found.
type Scan struct {
	// Found are the keys that authentic messages name.
	Found []KeyRef
	// Missing are the keys that has lacks, with how many messages name
	// them and the first one's sequence.
	Missing map[KeyRef]Naming
	// Messages is how many messages were read.
	Messages uint64
}

// Naming says which messages name a key.
type Naming struct {
	Count    int
	FirstSeq uint64
}

// Authenticator tells the service's messages from forgeries
// (eventstore.Authenticator).
type Authenticator interface {
	Authenticate(subject string, seq uint64, h nats.Header, data []byte) error
}

// ScanLog reads stream up to sequence upTo and collects the keys its
// messages name: the event-MAC key of every message's Enrollgate-Mac header,
// and the hash and seal keys of every PasscodeGenerated. A message signed
// under a key has lacks cannot be authenticated: its key is reported
// missing. Forged messages (under a known key, or unsigned past the MAC
// boundary) are skipped. It is run once, on a log written before the
// registry existed.
func ScanLog(ctx context.Context, js jetstream.JetStream, stream string, upTo uint64, auth Authenticator, has func(KeyRef) bool) (Scan, error) {
	sc := Scan{Missing: map[KeyRef]Naming{}}
	if upTo == 0 {
		return sc, nil
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return sc, fmt.Errorf("secrets: scan %s: %w", stream, err)
	}
	found := map[KeyRef]bool{}
	note := func(r KeyRef, seq uint64) {
		if r.ID == "" {
			return
		}
		if !has(r) {
			n := sc.Missing[r]
			if n.Count == 0 {
				n.FirstSeq = seq
			}
			n.Count++
			sc.Missing[r] = n
			return
		}
		found[r] = true
	}
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return sc, fmt.Errorf("secrets: scan %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return sc, fmt.Errorf("secrets: scan %s: %w", stream, err)
			}
			seq := md.Sequence.Stream
			sc.Messages++
			scanMessage(m, seq, auth, has, note)
			if seq >= upTo {
				for r := range found {
					sc.Found = append(sc.Found, r)
				}
				return sc, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return sc, fmt.Errorf("secrets: scan %s: %w", stream, err)
		}
		if n == 0 {
			return sc, fmt.Errorf("secrets: scan %s: no message after %d of the %d expected", stream, sc.Messages, upTo)
		}
	}
}

// scanMessage notes the keys one message names.
func scanMessage(m jetstream.Msg, seq uint64, auth Authenticator, has func(KeyRef) bool, note func(KeyRef, uint64)) {
	h := m.Headers()
	macID := ""
	if v := h.Get(events.HeaderMAC); v != "" {
		macID, _, _ = strings.Cut(v, ":")
		if !keyIDPattern.MatchString(macID) {
			return // malformed: forged
		}
		if !has(KeyRef{kindMAC, macID}) {
			// Cannot be told from a forgery here: a replica that has the
			// key can, and this one must not start without it.
			note(KeyRef{kindMAC, macID}, seq)
			return
		}
	}
	if auth.Authenticate(m.Subject(), seq, h, m.Data()) != nil {
		return // forged
	}
	note(KeyRef{kindMAC, macID}, seq)
	if h.Get(events.HeaderEventType) != string(events.TypePasscodeGenerated) {
		return
	}
	if e, err := events.Decode(m.Data()); err == nil {
		if g, ok := e.Data.(events.PasscodeGenerated); ok {
			note(KeyRef{kindMAC, g.HashKeyID}, seq)
			note(KeyRef{kindSeal, g.SealKeyID}, seq)
		}
	}
}
