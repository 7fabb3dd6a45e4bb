package handlers

import (
	"context"
	"reflect"
	"testing"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/events"
)

// A site ID is checked once, where it enters (events.ParseSite); inside,
// every command, the event store port and the aggregate take an events.Site,
// so that a string that was never parsed cannot reach them.
func TestInsideTakesOnlyParsedSites(t *testing.T) {
	site := reflect.TypeFor[events.Site]()
	ctx := reflect.TypeFor[context.Context]()
	svc := reflect.TypeFor[*Service]()
	commands := 0
	for i := range svc.NumMethod() {
		m := svc.Method(i)
		if m.Type.NumIn() != 3 || m.Type.In(1) != ctx || m.Type.In(2).Kind() != reflect.Struct {
			continue
		}
		commands++
		if f, ok := m.Type.In(2).FieldByName("Site"); !ok || f.Type != site {
			t.Errorf("command %s: field Site is missing or not an events.Site", m.Type.In(2).Name())
		}
	}
	if commands < 7 {
		t.Fatalf("found %d commands on Service, want at least 7", commands)
	}
	store := reflect.TypeFor[EventStore]()
	for _, name := range []string{"Load", "LastSeq"} {
		if m, ok := store.MethodByName(name); !ok || m.Type.In(1) != site {
			t.Errorf("EventStore.%s does not take an events.Site", name)
		}
	}
	if reflect.TypeOf(domain.New).In(0) != site {
		t.Error("domain.New does not take an events.Site")
	}
}
