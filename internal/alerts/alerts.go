package alerts

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/events"
	"github.com/enrollgate/enrollgate/internal/consume"
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
	// KindEventLogTampered is the subject token of the alert about a message
	// on the event log that the service did not write.
	KindEventLogTampered = "event_log_tampered"
	// TypeEventLogTampered is its CloudEvents type.
	TypeEventLogTampered = "io.enrollgate.event_log.tampered.v1"
	// UnknownSite stands for the site in the subject of a tampering alert
	// when the forged message's subject names none: no site ID starts with
	// '_'.
	UnknownSite = "_unknown"
	// TypePasscodeLockout is the CloudEvents type of the lockout alert. A
	// change of its data that is not backward compatible gets a new type
	// (…v2), never a changed v1.
	TypePasscodeLockout = "io.enrollgate.passcode.lockout.v1"
	// KindPasscodeExpired, KindPasscodeUsedUp and KindPasscodeLockoutSimulated
	// are the subject tokens of the lifecycle alerts: a generation's expiry
	// passed, its enrollments reached the cap, its failures reached the
	// threshold under a policy in monitor mode.
	KindPasscodeExpired          = "passcode_expired"
	KindPasscodeUsedUp           = "passcode_used_up"
	KindPasscodeLockoutSimulated = "passcode_lockout_simulated"
	// Their CloudEvents types.
	TypePasscodeExpired          = "io.enrollgate.passcode.expired.v1"
	TypePasscodeUsedUp           = "io.enrollgate.passcode.used_up.v1"
	TypePasscodeLockoutSimulated = "io.enrollgate.passcode.lockout_simulated.v1"
	// ContentType is the content type of a structured-mode CloudEvent.
	ContentType = "application/cloudevents+json"
	// MaxAge is how long alerts are kept: long enough for an incident review
	// of the last quarter, short enough that the stream stays small.
	MaxAge = 90 * 24 * time.Hour
	// DuplicateWindow is the stream's Nats-Msg-Id window. A resend within it
	// is dropped by the server; Handle's check of the alerts stored covers later
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
var Events = []events.Type{events.TypePasscodeDisabled, events.TypePasscodeExpired, events.TypePasscodeLockoutSimulated}

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
		Source:          "/enrollgate/sites/" + string(e.Site),
		Type:            TypePasscodeLockout,
		Subject:         string(e.Site),
		Time:            at,
		DataContentType: "application/json",
		Data: LockoutData{
			Site: string(e.Site), PasscodeID: d.PasscodeID, FailedAttempts: d.FailedAttempts,
			MaxFailedAttempts: d.MaxFailedAttempts, FailureWindow: d.FailureWindow.String(),
			FirstFailedAt: utc(d.FirstFailedAt), LastFailedAt: utc(d.LastFailedAt), DisabledAt: at,
			RecentSources: sources, DisableEventID: e.ID,
		},
	}, true
}

// LapseData is the data of a passcode_expired or passcode_used_up alert.
type LapseData struct {
	Site       string `json:"site"`
	PasscodeID string `json:"passcode_id"`
	// Reason is expired or used_up.
	Reason         string     `json:"reason"`
	ExpiresAt      *time.Time `json:"expires_at"`
	Enrollments    int        `json:"enrollments"`
	MaxEnrollments *int       `json:"max_enrollments"`
	RecordedAt     time.Time  `json:"recorded_at"`
	// EventID is the ID of the PasscodeExpired event in the audit trail.
	EventID string `json:"event_id"`
}

// LapseAlert is the passcode_expired or passcode_used_up CloudEvent.
type LapseAlert = CloudEvent[LapseData]

// NewLapseAlert builds the alert of a PasscodeExpired event, and its kind;
// ok is false for any other event.
func NewLapseAlert(e events.Event) (alert LapseAlert, kind string, ok bool) {
	d, isLapse := e.Data.(events.PasscodeExpired)
	if !isLapse {
		return LapseAlert{}, "", false
	}
	kind, typ := KindPasscodeExpired, TypePasscodeExpired
	if d.Reason == events.LapseUsedUp {
		kind, typ = KindPasscodeUsedUp, TypePasscodeUsedUp
	}
	at := e.OccurredAt.UTC()
	data := LapseData{Site: string(e.Site), PasscodeID: d.PasscodeID, Reason: string(d.Reason), ExpiresAt: utcOrNil(d.ExpiresAt),
		Enrollments: d.Enrollments, RecordedAt: at, EventID: e.ID}
	if d.MaxEnrollments > 0 {
		m := d.MaxEnrollments
		data.MaxEnrollments = &m
	}
	return LapseAlert{SpecVersion: "1.0", ID: e.ID, Source: "/enrollgate/sites/" + string(e.Site), Type: typ, Subject: string(e.Site),
		Time: at, DataContentType: "application/json", Data: data}, kind, true
}

// SimulatedData is the data of a passcode_lockout_simulated alert: what a
// lockout alert would say, with nothing disabled.
type SimulatedData struct {
	Site              string     `json:"site"`
	PasscodeID        string     `json:"passcode_id"`
	FailedAttempts    int        `json:"failed_attempts"`
	MaxFailedAttempts int        `json:"max_failed_attempts"`
	FailureWindow     string     `json:"failure_window"`
	FirstFailedAt     *time.Time `json:"first_failed_at"`
	LastFailedAt      *time.Time `json:"last_failed_at"`
	RecordedAt        time.Time  `json:"recorded_at"`
	RecentSources     []Source   `json:"recent_sources"`
	// EventID is the ID of the PasscodeLockoutSimulated event.
	EventID string `json:"event_id"`
}

// SimulatedAlert is the passcode_lockout_simulated CloudEvent.
type SimulatedAlert = CloudEvent[SimulatedData]

// NewSimulatedAlert builds the alert of a PasscodeLockoutSimulated event; ok
// is false for any other event.
func NewSimulatedAlert(e events.Event) (alert SimulatedAlert, ok bool) {
	d, isSim := e.Data.(events.PasscodeLockoutSimulated)
	if !isSim {
		return SimulatedAlert{}, false
	}
	sources := make([]Source, 0, len(d.RecentSources))
	for _, s := range d.RecentSources {
		sources = append(sources, Source(s))
	}
	at := e.OccurredAt.UTC()
	return SimulatedAlert{SpecVersion: "1.0", ID: e.ID, Source: "/enrollgate/sites/" + string(e.Site), Type: TypePasscodeLockoutSimulated,
		Subject: string(e.Site), Time: at, DataContentType: "application/json",
		Data: SimulatedData{Site: string(e.Site), PasscodeID: d.PasscodeID, FailedAttempts: d.FailedAttempts,
			MaxFailedAttempts: d.MaxFailedAttempts, FailureWindow: d.FailureWindow.String(),
			FirstFailedAt: utcOrNil(d.FirstFailedAt), LastFailedAt: utcOrNil(d.LastFailedAt), RecordedAt: at,
			RecentSources: sources, EventID: e.ID}}, true
}

func utcOrNil(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// TamperedData is the data of an event-log tampering alert. The claimed
// values are what the forged message's headers say, untrusted, cut to
// maxClaim bytes.
type TamperedData struct {
	// Site is the site of the subject the message was stored on, or
	// UnknownSite.
	Site      string    `json:"site"`
	Subject   string    `json:"subject"`
	Stream    string    `json:"stream"`
	StreamSeq uint64    `json:"stream_seq"`
	StoredAt  time.Time `json:"stored_at"`
	// Reason says why it is not authentic (no MAC, a MAC that does not
	// match, an unknown key, not an event...).
	Reason         string `json:"reason"`
	ClaimedEventID string `json:"claimed_event_id,omitempty"`
	ClaimedType    string `json:"claimed_type,omitempty"`
	// DeadLetterSubject is where a copy of the message is kept.
	DeadLetterSubject string `json:"dead_letter_subject"`
}

// TamperedAlert is the event-log tampering CloudEvent.
type TamperedAlert = CloudEvent[TamperedData]

const maxClaim = 256

// NewTamperedAlert builds the alert about a forged message.
func NewTamperedAlert(f consume.Forged) TamperedAlert {
	site := UnknownSite
	if s, err := events.SiteFromSubject(f.Subject); err == nil {
		site = string(s)
	}
	claim := func(s string) string {
		s = strings.ToValidUTF8(s, "\uFFFD")
		if len(s) > maxClaim {
			s = strings.ToValidUTF8(s[:maxClaim], "")
		}
		return s
	}
	at := f.StoredAt.UTC()
	return TamperedAlert{
		SpecVersion: "1.0", ID: tamperedID(f.Stream, f.Seq), Source: "/enrollgate/sites/" + site,
		Type: TypeEventLogTampered, Subject: site, Time: at, DataContentType: "application/json",
		Data: TamperedData{Site: site, Subject: claim(f.Subject), Stream: f.Stream, StreamSeq: f.Seq, StoredAt: at,
			Reason: claim(f.Reason), ClaimedEventID: claim(f.MsgID), ClaimedType: claim(f.Type), DeadLetterSubject: f.DeadLetterSubject},
	}
}

// tamperedID is the CloudEvent id of the alert about the message at seq:
// one message, one alert.
func tamperedID(stream string, seq uint64) string { return stream + "-" + strconv.FormatUint(seq, 10) }

// Tampered is a consume OnForged callback: it publishes one alert of kind
// event_log_tampered about a message on the event log that the service did
// not write. Give it to one durable only (the publisher's), so that N
// replicas raise one alert, not N. An error means the alert may not be
// stored: the consumer tries again, and the alert's Nats-Msg-Id and the
// check of the site's tampering alerts keep it single.
func (p *Publisher) Tampered(ctx context.Context, f consume.Forged) error {
	alert := NewTamperedAlert(f)
	subject := Subject(alert.Data.Site, KindEventLogTampered)
	published, err := p.alerted(ctx, subject, func(data []byte) int {
		var prev struct {
			Data struct {
				Stream    string `json:"stream"`
				StreamSeq uint64 `json:"stream_seq"`
			} `json:"data"`
		}
		if json.Unmarshal(data, &prev) != nil || prev.Data.Stream != f.Stream {
			return -1 // says nothing of this message
		}
		return cmp.Compare(prev.Data.StreamSeq, f.Seq)
	})
	if err != nil || published {
		return err
	}
	return p.publish(ctx, subject, MsgID(KindEventLogTampered, alert.ID), alert)
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
	alert, kind, ok := alertOf(rec.Event)
	if !ok {
		return nil
	}
	return p.publishOnce(ctx, rec.Event, kind, alert)
}

// KindOf is the kind of the alert an event raises, if it raises one.
func KindOf(e events.Event) (string, bool) {
	_, kind, ok := alertOf(e)
	return kind, ok
}

func alertOf(e events.Event) (alert any, kind string, ok bool) {
	if a, ok := NewLockoutAlert(e); ok {
		return a, KindPasscodeLockout, true
	}
	if a, k, ok := NewLapseAlert(e); ok {
		return a, k, true
	}
	if a, ok := NewSimulatedAlert(e); ok {
		return a, KindPasscodeLockoutSimulated, true
	}
	return nil, "", false
}

// publishOnce publishes the alert of kind about event e, unless the site's
// last alert of that kind is this one or a later one.
func (p *Publisher) publishOnce(ctx context.Context, e events.Event, kind string, alert any) error {
	subject := Subject(string(e.Site), kind)
	eventID := e.ID
	published, err := p.alerted(ctx, subject, func(data []byte) int {
		var prev struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(data, &prev) != nil {
			return -1 // not ours: says nothing
		}
		// Event IDs are ULIDs, which sort by time.
		return cmp.Compare(prev.ID, eventID)
	})
	if err != nil || published {
		return err
	}
	return p.publish(ctx, subject, MsgID(kind, eventID), alert)
}

// publish stores one alert on subject with msgID as its Nats-Msg-Id.
func (p *Publisher) publish(ctx context.Context, subject, msgID string, alert any) error {
	b, err := json.Marshal(alert)
	if err != nil {
		return fmt.Errorf("alerts: encode alert %s: %w", msgID, err)
	}
	msg := &nats.Msg{Subject: subject, Data: b, Header: nats.Header{}}
	msg.Header.Set("Content-Type", ContentType)
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(StreamName)); err != nil {
		return fmt.Errorf("alerts: publish alert %s on %s: %w", msgID, subject, err)
	}
	return nil
}

// alerted reports whether the alert that order describes is stored on
// subject. order compares a stored alert with it: 0 is this one, > 0 a
// later one. The last alert on subject answers it, unless it is a later one:
// the consumers handle events in no particular order, so this one may be
// stored before it, or not at all; then the subject's alerts are read. It
// catches a redelivery, or a replay of the log, after the duplicate window.
func (p *Publisher) alerted(ctx context.Context, subject string, order func(data []byte) int) (bool, error) {
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
	if c := order(last.Data); c <= 0 {
		return c == 0, nil
	}
	c, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return false, fmt.Errorf("alerts: read alerts on %s: %w", subject, err)
	}
	for {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			return false, fmt.Errorf("alerts: read alerts on %s: %w", subject, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return false, fmt.Errorf("alerts: read alerts on %s: %w", subject, err)
		}
		if order(m.Data()) == 0 {
			return true, nil
		}
		if md.Sequence.Stream >= last.Sequence {
			return false, nil
		}
	}
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
