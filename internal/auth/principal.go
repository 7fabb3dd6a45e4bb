package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/enrollgate/enrollgate/events"
)

// Role is what a principal may do on the sites it sees.
type Role string

// Roles of the HTTP contract.
const (
	// RoleAdmin may do everything on its sites.
	RoleAdmin Role = "admin"
	// RoleAuditor may read state, audit trail and attempts.
	RoleAuditor Role = "auditor"
	// RoleEnrollment may verify passcodes: the enrollment frontend.
	RoleEnrollment Role = "enrollment"
)

// Valid reports whether r is one of the roles.
func (r Role) Valid() bool {
	return r == RoleAdmin || r == RoleAuditor || r == RoleEnrollment
}

// Permission is what a route requires.
type Permission string

// Permissions the routes require.
const (
	// PermRead reads state, audit trail and attempts.
	PermRead Permission = "read"
	// PermWrite generates, reveals, disables and changes the lockout policy.
	PermWrite Permission = "write"
	// PermVerify verifies an enrollment passcode.
	PermVerify Permission = "verify"
)

// Grants reports whether the role includes the permission.
func (r Role) Grants(p Permission) bool {
	switch r {
	case RoleAdmin:
		return p == PermRead || p == PermWrite || p == PermVerify
	case RoleAuditor:
		return p == PermRead
	case RoleEnrollment:
		return p == PermVerify
	}
	return false
}

// AllSites in Principal.Sites lets the principal see every site.
const AllSites = "*"

// Principal is who a token stands for.
type Principal struct {
	// ID is the identity recorded as the actor of the events the principal
	// causes: an administrator's email, or a name for a service.
	ID string `json:"id"`
	// Role is what the principal may do on its sites.
	Role Role `json:"role"`
	// Sites are the site IDs the principal may see; AllSites for all.
	Sites []string `json:"sites"`
}

// CanSee reports whether the site is in the principal's scope.
func (p Principal) CanSee(site events.Site) bool {
	return slices.Contains(p.Sites, AllSites) || slices.Contains(p.Sites, string(site))
}

// AllSitesVisible reports whether the principal sees every site, so that a
// listing need not filter.
func (p Principal) AllSitesVisible() bool { return slices.Contains(p.Sites, AllSites) }

// ManagesTokens reports whether the principal may create, list and revoke
// API tokens: an admin of every site, since a token it made could reach any
// site.
func (p Principal) ManagesTokens() bool { return p.Role == RoleAdmin && p.AllSitesVisible() }

// MaxIDLen bounds a principal ID: it is recorded in every event it causes.
const MaxIDLen = 254

// MaxSites bounds the sites of a principal: each is an import of its NATS
// account.
const MaxSites = 256

// Validate reports every problem of the principal.
func (p Principal) Validate() error {
	var errs []error
	if p.ID == "" || len(p.ID) > MaxIDLen {
		errs = append(errs, fmt.Errorf("principal ID must be 1 to %d bytes, got %d", MaxIDLen, len(p.ID)))
	}
	// The ID is the actor of events and shows in audit lines and logs.
	if !utf8.ValidString(p.ID) || strings.ContainsRune(p.ID, utf8.RuneError) || strings.ContainsFunc(p.ID, events.UnsafeRune) {
		errs = append(errs, errors.New("principal ID must be valid UTF-8 without control, line separator or bidi formatting characters"))
	}
	if !p.Role.Valid() {
		errs = append(errs, fmt.Errorf("role must be admin, auditor or enrollment, got %q", p.Role))
	}
	if len(p.Sites) == 0 {
		errs = append(errs, errors.New("a principal needs at least one site, or \"*\" for all"))
	}
	if len(p.Sites) > MaxSites {
		errs = append(errs, fmt.Errorf("a principal may have at most %d sites, got %d", MaxSites, len(p.Sites)))
	}
	for _, s := range p.Sites {
		if s == AllSites {
			continue
		}
		if _, err := events.ParseSite(s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
