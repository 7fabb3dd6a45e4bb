package secrets

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

type trustAll struct{}

func (trustAll) Authenticate(string, uint64, nats.Header, []byte) error { return nil }

func TestRegistry(t *testing.T) {
	ctx := context.Background()
	js, err := jetstream.New(natstest.Connect(t, natstest.StartServer(t)))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := OpenRegistry(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	a, b := KeyRef{kindMAC, "mac-a"}, KeyRef{kindSeal, "seal-b"}
	created, err := reg.Register(ctx, []KeyRef{a, b}, "one")
	if err != nil || len(created) != 2 {
		t.Fatalf("register: %v %v", created, err)
	}
	if created, _ := reg.Register(ctx, []KeyRef{a}, "two"); len(created) != 0 {
		t.Fatal("a key recorded twice")
	}
	has := func(r KeyRef) bool { return r == a }
	if m, err := reg.Missing(ctx, has); err != nil || len(m) != 1 || m[0] != b {
		t.Fatalf("missing %v %v", m, err)
	}
	if err := reg.Forget(ctx, []KeyRef{b}); err != nil {
		t.Fatal(err)
	}
	if m, _ := reg.Missing(ctx, has); len(m) != 0 {
		t.Fatalf("forgotten key still recorded: %v", m)
	}
	if ok, _ := reg.Scanned(ctx); ok {
		t.Fatal("scanned before the scan")
	}
	if err := reg.MarkScanned(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if ok, _ := reg.Scanned(ctx); !ok {
		t.Fatal("scan not recorded")
	}
}

// TestScanLog reads a log of 5,000 messages once and finds every key it
// names, and the one this keeper lacks with its first sequence.
func TestScanLog(t *testing.T) {
	ctx := context.Background()
	js, err := jetstream.New(natstest.Connect(t, natstest.StartServer(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EV", Subjects: []string{"enrollgate.events.>"}}); err != nil {
		t.Fatal(err)
	}
	const n = 5_000
	for i := range n {
		m := nats.NewMsg(events.Subject("acme"))
		macID := "mac-old"
		if i >= n/2 {
			macID = "mac-new"
		}
		if i == 1234 {
			macID = "mac-lost"
		}
		m.Header.Set(events.HeaderMAC, macID+":AAAA")
		m.Data = []byte(`{}`)
		if i%100 == 0 {
			e := events.Event{ID: ulid.Make().String(), Site: "acme", OccurredAt: time.Now(),
				Data: events.PasscodeGenerated{PasscodeID: "p", HashKeyID: macID, SealKeyID: "seal-" + macID[4:], Hash: []byte{1}, Sealed: []byte{1}}}
			b, err := events.Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			m.Data = b
			m.Header.Set(events.HeaderEventType, string(events.TypePasscodeGenerated))
		}
		if _, err := js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
		if i%500 == 499 || i == n-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatal("publish")
			}
		}
	}
	has := func(r KeyRef) bool { return r.ID != "mac-lost" }
	t0 := time.Now()
	sc, err := ScanLog(ctx, js, "EV", n, trustAll{}, has)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("scanned %d messages in %s", sc.Messages, time.Since(t0))
	if sc.Messages != n {
		t.Fatalf("read %d messages", sc.Messages)
	}
	found := fmt.Sprint(sc.Found)
	for _, r := range []KeyRef{{kindMAC, "mac-old"}, {kindMAC, "mac-new"}, {kindSeal, "seal-old"}, {kindSeal, "seal-new"}} {
		ok := false
		for _, f := range sc.Found {
			ok = ok || f == r
		}
		if !ok {
			t.Fatalf("%s not found in %s", r, found)
		}
	}
	if len(sc.Found) != 4 {
		t.Fatalf("found %s", found)
	}
	if m := sc.Missing[KeyRef{kindMAC, "mac-lost"}]; len(sc.Missing) != 1 || m.Count != 1 || m.FirstSeq != 1235 {
		t.Fatalf("missing %v", sc.Missing)
	}
}
