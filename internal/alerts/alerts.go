package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
)

// Stream and subjects of the alerts.
const (
	// StreamName is the stream that keeps the alerts.
	StreamName = "ENROLLGATE_ALERTS"
	// SubjectPrefix starts every alert subject: enrollgate.alerts.<site>.<kind>.
	SubjectPrefix = "enrollgate.alerts."
	// SubjectAll matches every alert.
	SubjectAll = SubjectPrefix + ">"
	// KindPasscodeLockout is the subject token of the lockout alert.
	KindPasscodeLockout = "passcode_lockout"
	// TypePasscodeLockout is the CloudEvents type of the lockout alert. A
	// change of its data that is not backward compatible gets a new type
	// (…v2), never a changed v1.
	TypePasscodeLockout = "io.enrollgate.passcode.lockout.v1"
	// ContentType is the content type of a structured-mode CloudEvent.
	ContentType = "application/cloudevents+json"
	// MaxAge is how long alerts are kept: long enough for an incident review
	// of the last quarter, short enough that the stream stays small.
	MaxAge = 90 * 24 * time.Hour
	// DuplicateWindow is the stream's Nats-Msg-Id window. A resend within it
	// is dropped by the server; Handle's check of the last alert covers later
	// ones.
	DuplicateWindow = time.Hour
)

// Durable is the name of the alert publisher's durable consumer on the
// event log. WARNING: never rename it: a new name is a new consumer that
// starts from the first event again (the check of each site's last alert
// keeps those old lockouts from being alerted twice, at the cost of a replay).
const Durable = "alert-publisher"

// Events are the event types an alert can come from (Handle ignores the
// others), so that the publisher's consumer need not decode the rest.
var Events = []events.Type{events.TypePasscodeDisabled}

// Subject returns the subject of an alert of kind about site.
func Subject(site, kind string) string { return SubjectPrefix + site + "." + kind }

// EnsureStream creates the alert stream, or updates it to this
// configuration.
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if replicas < 1 || replicas > 5 {
		return fmt.Errorf("alerts: replicas must be 1 to 5, got %d", replicas)
	}
	_, err := js.CreateOrUpdateStream(ctx, StreamConfig(replicas))
	if err != nil {
		return fmt.Errorf("alerts: ensure stream %s: %w", StreamName, err)
	}
	return nil
}

// StreamConfig is the configuration EnsureStream applies.
func StreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "enrollgate security alerts, CloudEvents 1.0 structured JSON",
		Subjects:    []string{SubjectAll},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      MaxAge,
		Duplicates:  DuplicateWindow,
		AllowDirect: true,
	}
}

// CloudEvent is a structured-mode CloudEvents 1.0 alert.
type CloudEvent[T any] struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            T         `json:"data"`
}

// Source is one origin of failed attempts, as the enrollment frontend
// reported it.
type Source struct {
	IP        string `json:"ip,omitempty"`
	DeviceID  string `json:"device_id,omitempty"`
	Platform  string `json:"platform,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
}

// LockoutData is the data of a passcode lockout alert.
type LockoutData struct {
	Site              string `json:"site"`
	PasscodeID        string `json:"passcode_id"`
	FailedAttempts    int    `json:"failed_attempts"`
	MaxFailedAttempts int    `json:"max_failed_attempts"`
	// FailureWindow is a Go duration string ("1h0m0s"); "0s" counts every
	// failure since the passcode was generated.
	FailureWindow string     `json:"failure_window"`
	FirstFailedAt *time.Time `json:"first_failed_at"`
	LastFailedAt  *time.Time `json:"last_failed_at"`
	DisabledAt    time.Time  `json:"disabled_at"`
	// RecentSources are the distinct sources of the counted failures,
	// newest first.
	RecentSources []Source `json:"recent_sources"`
	// DisableEventID is the ID of the PasscodeDisabled event in the audit
	// trail.
	DisableEventID string `json:"disable_event_id"`
}

// LockoutAlert is the lockout CloudEvent.
type LockoutAlert = CloudEvent[LockoutData]

// NewLockoutAlert builds the alert for a lockout disable; ok is false for any
// other event.
func NewLockoutAlert(e events.Event) (alert LockoutAlert, ok bool) {
	d, isDisable := e.Data.(events.PasscodeDisabled)
	if !isDisable || d.Reason != events.DisableLockout {
		return LockoutAlert{}, false
	}
	sources := make([]Source, 0, len(d.RecentSources))
	for _, s := range d.RecentSources {
		sources = append(sources, Source(s))
	}
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC()
		return &u
	}
	at := e.OccurredAt.UTC()
	return LockoutAlert{
		SpecVersion:     "1.0",
		ID:              e.ID,
		Source:          "/enrollgate/sites/" + e.Site,
		Type:            TypePasscodeLockout,
		Subject:         e.Site,
		Time:            at,
		DataContentType: "application/json",
		Data: LockoutData{
			Site: e.Site, PasscodeID: d.PasscodeID, FailedAttempts: d.FailedAttempts,
			MaxFailedAttempts: d.MaxFailedAttempts, FailureWindow: d.FailureWindow.String(),
			FirstFailedAt: utc(d.FirstFailedAt), LastFailedAt: utc(d.LastFailedAt), DisabledAt: at,
			RecentSources: sources, DisableEventID: e.ID,
		},
	}, true
}

// MsgID is the Nats-Msg-Id of the alert about the event eventID.
func MsgID(kind, eventID string) string { return "alert:" + kind + ":" + eventID }

// Publisher turns lockout disables into alerts.
type Publisher struct {
	js jetstream.JetStream

	mu     sync.Mutex
	stream jetstream.Stream // looked up on first use, so that the stream may be created after NewPublisher
}

// NewPublisher returns a Publisher that publishes through js. Give js its own
// connection.
func NewPublisher(js jetstream.JetStream) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("alerts: jetstream is required")
	}
	return &Publisher{js: js}, nil
}

// Handle is a consume.Handler: it publishes the alert of a lockout disable
// and ignores every other event. An error means the alert may not be stored:
// the consumer tries again, and the alert's Nats-Msg-Id keeps it single.
func (p *Publisher) Handle(ctx context.Context, rec events.Record) error {
	alert, ok := NewLockoutAlert(rec.Event)
	if !ok {
		return nil
	}
	subject := Subject(rec.Event.Site, KindPasscodeLockout)
	msgID := MsgID(KindPasscodeLockout, rec.Event.ID)
	published, err := p.alreadyPublished(ctx, subject, rec.Event.ID)
	if err != nil {
		return err
	}
	if published {
		return nil
	}
	b, err := json.Marshal(alert)
	if err != nil {
		return fmt.Errorf("alerts: encode lockout alert %s: %w", rec.Event.ID, err)
	}
	msg := &nats.Msg{Subject: subject, Data: b, Header: nats.Header{}}
	msg.Header.Set("Content-Type", ContentType)
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(StreamName)); err != nil {
		return fmt.Errorf("alerts: publish lockout alert %s on %s: %w", rec.Event.ID, subject, err)
	}
	return nil
}

// alreadyPublished reports whether the last alert on subject is this event's
// or a later one's. The consumer delivers disables in stream order and
// retries each until its alert is stored, so an alert of a later disable on
// the subject means this one was published too: this catches a redelivery, or
// a replay of the log, after the duplicate window.
func (p *Publisher) alreadyPublished(ctx context.Context, subject, eventID string) (bool, error) {
	stream, err := p.alertStream(ctx)
	if err != nil {
		return false, err
	}
	last, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("alerts: last alert on %s: %w", subject, err)
	}
	var prev struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(last.Data, &prev); err != nil {
		// Not one of ours: it says nothing about this event.
		return false, nil
	}
	// Event IDs are ULIDs, which sort by time.
	return prev.ID >= eventID, nil
}

func (p *Publisher) alertStream(ctx context.Context) (jetstream.Stream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stream == nil {
		s, err := p.js.Stream(ctx, StreamName)
		if err != nil {
			return nil, fmt.Errorf("alerts: stream %s: %w", StreamName, err)
		}
		p.stream = s
	}
	return p.stream, nil
}
