package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/enrollgate/enrollgate/internal/auth"
	"github.com/enrollgate/enrollgate/internal/httpapi"
)

// tokenCommand parses the flags of a `tokens` command, the admin commands'
// common ones (--url, --ca, --json; the token from $ENROLLGATE_TOKEN) and
// what own adds, and returns the client and the arguments left.
func tokenCommand(name, usage string, args []string, getenv func(string) string, stdout, stderr io.Writer, own func(*flag.FlagSet)) (*adminClient, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: enrollgate %s\n(an admin token for all sites comes from $ENROLLGATE_TOKEN)\n", usage)
		fs.PrintDefaults()
	}
	var common adminFlags
	common.register(fs, getenv)
	if own != nil {
		own(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil, err
		}
		return nil, nil, &cliError{code: exitUsage, msg: err.Error()}
	}
	c, err := common.client(getenv, stdout)
	return c, fs.Args(), err
}

// addToken creates an API token through the token API of a running service
// and prints it once on stdout; every replica accepts it within about a
// second.
func addToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var role, id *string
	var sites siteList
	c, rest, err := tokenCommand("tokens add", "tokens add --role admin|auditor|enrollment --id NAME [--site SITE ...]", args, getenv, stdout, stderr,
		func(fs *flag.FlagSet) {
			role = fs.String("role", "", "admin, auditor or enrollment")
			id = fs.String("id", "", "the identity recorded for the token: an administrator's email, or a service name")
			fs.Var(&sites, "site", "a site the token may see; repeat for several; omit for all sites")
		})
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError("unexpected arguments: %s", strings.Join(rest, " "))
	}
	if len(sites) == 0 {
		sites = siteList{auth.AllSites}
	}
	var created httpapi.CreateTokenResponse
	b, err := c.doJSON(ctx, "POST", "/v1/tokens", nil, map[string]any{"role": *role, "identity": *id, "sites": []string(sites)}, &created)
	if err != nil {
		return err
	}
	if c.json {
		return c.print(b, nil)
	}
	fmt.Fprintf(stdout, "%s\n", created.Token)
	fmt.Fprintf(stderr, "token %s for %s (%s on %s) created; it is shown only this once.\n",
		created.TokenID, created.Identity, created.Role, strings.Join(created.Sites, ","))
	return nil
}

type siteList []string

func (s *siteList) String() string     { return strings.Join(*s, ",") }
func (s *siteList) Set(v string) error { *s = append(*s, v); return nil }

// listTokens prints the tokens without their secrets.
func listTokens(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, rest, err := tokenCommand("tokens ls", "tokens ls [--json]", args, getenv, stdout, stderr, nil)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usageError("unexpected arguments: %s", strings.Join(rest, " "))
	}
	var list httpapi.TokensResponse
	b, err := c.doJSON(ctx, "GET", "/v1/tokens", nil, nil, &list)
	if err != nil {
		return err
	}
	return c.print(b, func(w *tabwriter.Writer) error {
		fmt.Fprintln(w, "ID\tROLE\tIDENTITY\tSITES\tCREATED\tCREATED BY\tLAST USED")
		for _, t := range list.Tokens {
			by := dash(t.CreatedBy)
			if t.Bootstrap {
				by = "(bootstrap flag)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.TokenID, t.Role, t.Identity,
				strings.Join(t.Sites, ","), when(t.CreatedAt), by, when(t.LastUsedAt))
		}
		return nil
	})
}

// revokeToken revokes a stored token: every replica refuses it, over HTTP
// and NATS, and closes its NATS connections, within about a second.
func revokeToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	c, rest, err := tokenCommand("tokens revoke", "tokens revoke TOKEN_ID", args, getenv, stdout, stderr, nil)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError("usage: enrollgate tokens revoke [--url URL] TOKEN_ID")
	}
	if _, err := c.do(ctx, "DELETE", "/v1/tokens/"+url.PathEscape(rest[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "token %s revoked\n", rest[0])
	return nil
}
