package natsserver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/enrollgate/enrollgate/internal/auth"
	"github.com/enrollgate/enrollgate/internal/verifywire"
)

// ServiceUser is the user the service's own connections log in as when the
// embedded server has access control (Config.Access).
const ServiceUser = "enrollgate"

// Subjects and names of the NATS contract that access control grants.
const (
	alertsStream  = "ENROLLGATE_ALERTS"
	alertsSubject = "enrollgate.alerts."
)

// Subjects that exist only between the service's account and the token
// accounts, for the alert copies; no client may publish to them.
const (
	// mirrorAPI is where a token account's alert copy asks the service's
	// account for its source consumers.
	mirrorAPI = "EG.ALERTS.API"
	// mirrorDeliver is the prefix of those consumers' deliveries; each token
	// account imports only its own.
	mirrorDeliver = "EG.ALERTS.DELIVER."
)

// internalUserPrefix names the connection Access itself makes into a token
// account to create that account's alert copy.
const internalUserPrefix = "$enrollgate-internal:"

// TokenLookup resolves an API token: *auth.Store.
type TokenLookup interface {
	Identify(token string) (auth.TokenInfo, bool)
}

// accountLimits bound what a token account may keep in JetStream: its copy
// of the alerts of its sites and the consumers its security tooling makes.
var accountLimits = map[string]server.JetStreamAccountLimits{"": {
	MaxMemory: 0, MaxStore: 64 << 20, MaxStreams: 1, MaxConsumers: 64,
}}

// AlertCopyMaxAge is how long a token account's alert copy keeps an alert:
// as long as ENROLLGATE_ALERTS does (alerts.MaxAge; a test keeps them equal).
const AlertCopyMaxAge = 90 * 24 * time.Hour

// Access is the embedded server's access control. The service logs in as
// ServiceUser in the server's global account, which holds the streams and
// the verify endpoint. Every API token gets an account of its own that
// imports only what the token's role and sites allow: the verify subjects of
// its sites, micro discovery, and (auditor, admin) the alerts of its sites,
// live and as a JetStream copy that its consumers replay. Accounts share
// nothing else, so a client sees neither the service's traffic nor another
// token's; a connection without a valid token is refused.
type Access struct {
	tokens       TokenLookup
	passwordHash []byte
	// internalSecret admits Access's own connections into token accounts.
	internalSecret string
	log            zerolog.Logger

	// alertsAPI is where the alert stream's JetStream API is: $JS.API on a
	// server that holds the streams, the cluster's domain API on an edge
	// (set by Start).
	alertsAPI string

	mu       sync.Mutex
	srv      *server.Server
	accounts map[string]*tokenAccount // by token ID
}

type tokenAccount struct {
	acc  *server.Account
	info auth.TokenInfo
}

// NewAccess returns access control for a server whose service user logs in
// with servicePassword. The server keeps only a bcrypt hash of it (a low
// cost is enough: the password is long and random, or configured with at
// least 16 characters, and the service pays it per connection).
func NewAccess(servicePassword string, tokens TokenLookup, log zerolog.Logger) (*Access, error) {
	if servicePassword == "" || tokens == nil {
		return nil, errors.New("nats access: a service password and a token lookup are required")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(servicePassword), 6)
	if err != nil {
		return nil, fmt.Errorf("nats access: hash the service password: %w", err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("nats access: internal secret: %w", err)
	}
	return &Access{tokens: tokens, passwordHash: hash, internalSecret: base64.RawURLEncoding.EncodeToString(raw[:]),
		log: log, accounts: make(map[string]*tokenAccount)}, nil
}

// Check implements server.Authentication.
func (a *Access) Check(c server.ClientAuthentication) bool {
	opts := c.GetOpts()
	switch {
	case opts.Username == ServiceUser:
		if bcrypt.CompareHashAndPassword(a.passwordHash, []byte(opts.Password)) != nil {
			return false
		}
		c.RegisterUser(&server.User{Username: ServiceUser})
		return true
	case strings.HasPrefix(opts.Username, internalUserPrefix):
		if subtle.ConstantTimeCompare([]byte(opts.Password), []byte(a.internalSecret)) != 1 {
			return false
		}
		ta := a.account(strings.TrimPrefix(opts.Username, internalUserPrefix))
		if ta == nil {
			return false
		}
		c.RegisterUser(&server.User{Username: opts.Username, Account: ta.acc})
		return true
	case opts.Token != "":
		info, ok := a.tokens.Identify(opts.Token)
		if !ok {
			return false
		}
		ta := a.account(info.ID)
		if ta == nil {
			// Made by another process a moment ago: Sync catches up.
			return false
		}
		c.RegisterUser(&server.User{Username: info.ID, Account: ta.acc, Permissions: permissions(info.Principal)})
		return true
	}
	return false
}

func (a *Access) account(tokenID string) *tokenAccount {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accounts[tokenID]
}

// attach exports, from the global account, what token accounts may import.
func (a *Access) attach(s *server.Server) error {
	g := s.GlobalAccount()
	exports := []error{
		g.AddServiceExport(verifywire.SubjectPrefix+"*", nil),
		g.AddServiceExportWithResponse("$SRV.>", server.Streamed, nil),
		g.AddStreamExport(alertsSubject+">", nil),
		g.AddServiceExportWithResponse(a.api()+".CONSUMER.CREATE."+alertsStream+".>", server.Streamed, nil),
		g.AddServiceExport("$JS.FC.>", nil),
		g.AddStreamExport(mirrorDeliver+">", nil),
	}
	if err := errors.Join(exports...); err != nil {
		return fmt.Errorf("nats access: exports: %w", err)
	}
	a.mu.Lock()
	a.srv = s
	a.mu.Unlock()
	return nil
}

// Sync makes the token accounts match tokens: an account for each new token,
// and for each token gone, its connections closed, its alert copy deleted,
// and its logins refused. Call it after the alert stream exists and whenever
// the tokens change.
func (a *Access) Sync(ctx context.Context, tokens []auth.TokenInfo) error {
	a.mu.Lock()
	s := a.srv
	current := make(map[string]bool, len(tokens))
	var added []auth.TokenInfo
	var removed []*tokenAccount
	for _, t := range tokens {
		current[t.ID] = true
		if _, ok := a.accounts[t.ID]; !ok {
			added = append(added, t)
		}
	}
	for id, ta := range a.accounts {
		if !current[id] {
			removed = append(removed, ta)
			delete(a.accounts, id)
		}
	}
	a.mu.Unlock()
	if s == nil {
		return errors.New("nats access: not attached to a server")
	}
	var errs []error
	for _, ta := range removed {
		errs = append(errs, a.remove(ctx, s, ta))
	}
	for _, t := range added {
		errs = append(errs, a.add(ctx, s, t))
	}
	return errors.Join(errs...)
}

// accountName is the server account of a token. Token IDs are
// [-_a-z0-9], so the name is a valid account name and subject token.
func accountName(tokenID string) string { return "EG_" + tokenID }

func (a *Access) add(ctx context.Context, s *server.Server, t auth.TokenInfo) error {
	name := accountName(t.ID)
	acc, err := s.LookupAccount(name)
	if err != nil {
		if acc, err = s.RegisterAccount(name); err != nil {
			return fmt.Errorf("nats access: account of token %s: %w", t.ID, err)
		}
		if err := imports(acc, s.GlobalAccount(), t.Principal, a.api()); err != nil {
			return fmt.Errorf("nats access: imports of token %s: %w", t.ID, err)
		}
	}
	ta := &tokenAccount{acc: acc, info: t}
	if readsAlerts(t.Principal.Role) {
		if !acc.JetStreamEnabled() {
			if err := acc.EnableJetStream(accountLimits, nil); err != nil {
				return fmt.Errorf("nats access: JetStream for token %s: %w", t.ID, err)
			}
		}
		if err := a.ensureAlertCopy(ctx, s, ta); err != nil {
			return err
		}
	}
	a.mu.Lock()
	a.accounts[t.ID] = ta
	a.mu.Unlock()
	return nil
}

// remove closes the connections of a revoked token and deletes its alert
// copy. Its account stays registered (the server cannot forget one) but
// nobody can log in to it any more.
func (a *Access) remove(ctx context.Context, s *server.Server, ta *tokenAccount) error {
	var errs []error
	if ta.acc.JetStreamEnabled() {
		errs = append(errs, a.deleteAlertCopy(ctx, s, ta))
	}
	conns, err := s.Connz(&server.ConnzOptions{Account: ta.acc.Name, Limit: 1 << 16})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("nats access: connections of token %s: %w", ta.info.ID, err))...)
	}
	for _, ci := range conns.Conns {
		// A connection that closed meanwhile is no error.
		_ = s.DisconnectClientByID(ci.Cid)
	}
	a.log.Info().Str("token_id", ta.info.ID).Int("connections_closed", len(conns.Conns)).Msg("token revoked on NATS")
	return errors.Join(errs...)
}

func (a *Access) api() string {
	if a.alertsAPI == "" {
		return "$JS.API"
	}
	return a.alertsAPI
}

// readsAlerts reports whether the role may read alerts.
func readsAlerts(r auth.Role) bool { return r.Grants(auth.PermRead) }

// scoped returns one subject per site of p under prefix, or prefix+any when
// p sees every site.
func scoped(p auth.Principal, prefix, suffix, any string) []string {
	if p.AllSitesVisible() {
		return []string{prefix + any}
	}
	out := make([]string, 0, len(p.Sites))
	for _, site := range p.Sites {
		out = append(out, prefix+site+suffix)
	}
	return out
}

// imports gives a token account what its principal may reach in the
// service's account.
func imports(acc, g *server.Account, p auth.Principal, api string) error {
	var errs []error
	errs = append(errs, acc.AddServiceImport(g, "$SRV.>", ""))
	if p.Role.Grants(auth.PermVerify) {
		for _, subj := range scoped(p, verifywire.SubjectPrefix, "", "*") {
			errs = append(errs, acc.AddServiceImport(g, subj, ""))
		}
	}
	if readsAlerts(p.Role) {
		for _, subj := range scoped(p, alertsSubject, ".>", ">") {
			errs = append(errs, acc.AddStreamImport(g, subj, ""))
			// The copy's source consumers may only filter on its sites.
			errs = append(errs, acc.AddServiceImport(g,
				mirrorAPI+".CONSUMER.CREATE."+alertsStream+".*."+subj,
				api+".CONSUMER.CREATE."+alertsStream+".*."+subj))
		}
		errs = append(errs, acc.AddServiceImport(g, "$JS.FC.>", ""))
		errs = append(errs, acc.AddStreamImport(g, mirrorDeliver+acc.Name+".>", ""))
	}
	return errors.Join(errs...)
}

// permissions are what a token's connections may do inside its account.
// Subscribing is open: the account holds only what was imported for it and
// the token's own traffic. Publishing is limited to the contract's requests,
// and for alert readers to their copy's consumers; never to stream
// management, so the copy and its sources stay as Access made them.
func permissions(p auth.Principal) *server.Permissions {
	pub := []string{"$SRV.>"}
	if p.Role.Grants(auth.PermVerify) {
		pub = append(pub, scoped(p, verifywire.SubjectPrefix, "", "*")...)
	}
	if readsAlerts(p.Role) {
		const s = alertsStream
		pub = append(pub,
			"$JS.API.INFO",
			"$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
			"$JS.API.STREAM.INFO."+s,
			"$JS.API.STREAM.MSG.GET."+s,
			"$JS.API.DIRECT.GET."+s, "$JS.API.DIRECT.GET."+s+".>",
			"$JS.API.CONSUMER.NAMES."+s, "$JS.API.CONSUMER.LIST."+s,
			"$JS.API.CONSUMER.*."+s, "$JS.API.CONSUMER.*."+s+".>",
			"$JS.API.CONSUMER.MSG.NEXT."+s+".>",
			"$JS.API.CONSUMER.DURABLE.CREATE."+s+".>",
			"$JS.ACK."+s+".>",
		)
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: []string{">"}},
	}
}

// alertCopyConfig is a token account's copy of the alert stream: one source
// per site of its scope, so that it holds those sites' alerts, past and
// future, and nothing else.
func alertCopyConfig(acc string, p auth.Principal) jetstream.StreamConfig {
	var sources []*jetstream.StreamSource
	for _, subj := range scoped(p, alertsSubject, ".>", ">") {
		sources = append(sources, &jetstream.StreamSource{Name: alertsStream, FilterSubject: subj,
			External: &jetstream.ExternalStream{APIPrefix: mirrorAPI, DeliverPrefix: mirrorDeliver + acc}})
	}
	return jetstream.StreamConfig{
		Name:        alertsStream,
		Description: "enrollgate security alerts of this token's sites (a copy kept by the service)",
		Storage:     jetstream.FileStorage,
		Sources:     sources,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxBytes:    accountLimits[""].MaxStore / 2,
		MaxAge:      AlertCopyMaxAge,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
}

func (a *Access) ensureAlertCopy(ctx context.Context, s *server.Server, ta *tokenAccount) error {
	return a.withInternal(ctx, s, ta, func(ctx context.Context, js jetstream.JetStream) error {
		_, err := js.CreateOrUpdateStream(ctx, alertCopyConfig(ta.acc.Name, ta.info.Principal))
		return err
	})
}

func (a *Access) deleteAlertCopy(ctx context.Context, s *server.Server, ta *tokenAccount) error {
	return a.withInternal(ctx, s, ta, func(ctx context.Context, js jetstream.JetStream) error {
		err := js.DeleteStream(ctx, alertsStream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil
		}
		return err
	})
}

// withInternal runs fn on an in-process connection into the token's
// account. The connection logs in through a.accounts, so a token not (or no
// longer) there is put there for the call.
func (a *Access) withInternal(ctx context.Context, s *server.Server, ta *tokenAccount, fn func(context.Context, jetstream.JetStream) error) error {
	if a.account(ta.info.ID) == nil {
		a.mu.Lock()
		a.accounts[ta.info.ID] = ta
		a.mu.Unlock()
		defer func() {
			a.mu.Lock()
			delete(a.accounts, ta.info.ID)
			a.mu.Unlock()
		}()
	}
	nc, err := nats.Connect("", nats.InProcessServer(s), nats.Name("enrollgate-access"),
		nats.UserInfo(internalUserPrefix+ta.info.ID, a.internalSecret))
	if err != nil {
		return fmt.Errorf("nats access: connect to the account of token %s: %w", ta.info.ID, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := fn(ctx, js); err != nil {
		return fmt.Errorf("nats access: alert copy of token %s: %w", ta.info.ID, err)
	}
	return nil
}
