package natsserver

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/bcrypt"
)

// ServiceUser is the user the service's own connections log in as when the
// embedded server has access control (Config.ServicePassword).
const ServiceUser = "enrollgate"

// publicUser is who a connection without credentials is.
const publicUser = "public"

// publicPermissions are what a client without credentials may do: ask the
// verify endpoint and discover the micro service (enrollment frontends), and
// read security alerts live or replay them from ENROLLGATE_ALERTS (security
// tooling). Above all it may not publish to enrollgate.events.>: only the
// service writes the event log, so nobody can forge an event or put a message
// into a site's log that the service cannot decode.
func publicPermissions() *server.Permissions {
	const alerts = "ENROLLGATE_ALERTS"
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"enrollgate.verify.*",
			"$SRV.>",
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO." + alerts,
			"$JS.API.STREAM.MSG.GET." + alerts,
			"$JS.API.DIRECT.GET." + alerts, "$JS.API.DIRECT.GET." + alerts + ".>",
			"$JS.API.CONSUMER.CREATE." + alerts, "$JS.API.CONSUMER.CREATE." + alerts + ".>",
			"$JS.API.CONSUMER.DURABLE.CREATE." + alerts + ".>",
			"$JS.API.CONSUMER.INFO." + alerts + ".>",
			"$JS.API.CONSUMER.DELETE." + alerts + ".>",
			"$JS.API.CONSUMER.MSG.NEXT." + alerts + ".>",
			"$JS.API.CONSUMER.NAMES." + alerts, "$JS.API.CONSUMER.LIST." + alerts,
			"$JS.ACK." + alerts + ".>",
			"$JS.FC." + alerts + ".>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>", "enrollgate.alerts.>"}},
	}
}

// accessControl sets the users of the server: the service with all rights,
// and everyone else as the public user. The server keeps only a bcrypt hash
// of the service password (it warns about plain-text passwords otherwise); a
// low cost is enough, since the password is long and random or configured
// with at least 16 characters, and every connection pays it.
func accessControl(opts *server.Options, servicePassword string) error {
	hash, err := bcrypt.GenerateFromPassword([]byte(servicePassword), 6)
	if err != nil {
		return fmt.Errorf("nats server: hash the service password: %w", err)
	}
	opts.Users = []*server.User{
		{Username: ServiceUser, Password: string(hash)},
		{Username: publicUser, Permissions: publicPermissions()},
	}
	opts.NoAuthUser = publicUser
	return nil
}
