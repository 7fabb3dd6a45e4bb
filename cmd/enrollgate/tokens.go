package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/enrollgate/enrollgate/internal/auth"
)

// openTokens opens the tokens file of the data dir named by --data-dir or
// $ENROLLGATE_DATA_DIR; what remains of args is returned.
func openTokens(name string, args []string, getenv func(string) string, stderr io.Writer) (*auth.Store, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := getenv("ENROLLGATE_DATA_DIR")
	if dataDir == "" {
		dataDir = "./data"
	}
	fs.StringVar(&dataDir, "data-dir", dataDir, "data dir holding tokens.json ($ENROLLGATE_DATA_DIR)")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	store, err := auth.Open(auth.Config{File: filepath.Join(dataDir, "tokens.json")})
	return store, fs.Args(), err
}

// listTokens prints the stored tokens without their secrets.
func listTokens(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	store, rest, err := openTokens("tokens ls", args, getenv, stderr)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return errors.New("usage: enrollgate tokens ls [--data-dir DIR]")
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tROLE\tIDENTITY\tSITES\tCREATED")
	for _, t := range store.List() {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Principal.Role, t.Principal.ID,
			strings.Join(t.Principal.Sites, ","), t.CreatedAt.Format(time.RFC3339))
	}
	return w.Flush()
}

// revokeToken removes a stored token. A running service rereads the tokens
// file every second, closes the token's NATS connections and refuses it
// over NATS and HTTP from then on.
func revokeToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	store, rest, err := openTokens("tokens revoke", args, getenv, stderr)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return errors.New("usage: enrollgate tokens revoke [--data-dir DIR] TOKEN_ID")
	}
	if err := store.Revoke(rest[0]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "token %s revoked\n", rest[0])
	return nil
}
