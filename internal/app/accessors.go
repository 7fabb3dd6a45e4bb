package app

// HTTPAddr is the address the HTTP API listens on.
func (a *App) HTTPAddr() string { return a.httpAddr.String() }

// ClientURL is where frontends and security tooling connect: the embedded
// server, or this replica's edge of the cluster; empty when clients connect
// to the cluster themselves.
func (a *App) ClientURL() string { return a.clientURL }

// NATSURL is the NATS URL the service's own connections use, credentials
// included when --nats-url holds them: redact it before printing.
func (a *App) NATSURL() string { return a.natsURL }
