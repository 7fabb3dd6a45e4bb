package app

// HTTPAddr is the address the HTTP API listens on.
func (a *App) HTTPAddr() string { return a.httpAddr.String() }

// ClientURL is where frontends and security tooling connect: the embedded
// server, or this replica's edge of the cluster; empty when clients connect
// to the cluster themselves.
func (a *App) ClientURL() string { return a.clientURL }
