package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/enrollgate/enrollgate/internal/app"
	"github.com/enrollgate/enrollgate/internal/readstore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp): // -h of a subcommand: its usage was printed
	case err != nil:
		fmt.Fprintln(os.Stderr, "enrollgate:", err)
		os.Exit(exitCode(err))
	}
}

const usage = `usage: enrollgate [command] [flags]

commands:
  serve                  run the service (the default)
  projections rebuild    rebuild the read model from the event stream, then exit
  tokens add             create an API token: --role admin|auditor|enrollment --id NAME [--site SITE ...]
  tokens ls              list the API tokens (without their secrets)
  tokens revoke ID       revoke an API token; every replica drops it within about a second
                         (the tokens commands are admin commands, below, and need an admin
                         token for all sites)
  health                 exit 0 when a running service's /readyz says ready, else 1 with the reason
  keys init              create a keys file the replicas share: --keys-file FILE [--from data/keys.json ...]
  keys rotate            add new current keys to a keys file, keeping the old: --keys-file FILE [--activate-after 1m]
  version                print the version

admin commands, over the HTTP API (--url, default http://127.0.0.1:8080 or $ENROLLGATE_URL;
the token from $ENROLLGATE_TOKEN; --json prints the API's JSON):
  sites ls                                  the sites the token may see
  passcode show|generate|reveal|disable     --site SITE
  attempts                                  --site SITE [--outcome failed|succeeded] [--limit N]
  audit                                     --site SITE [--limit N] [--cursor C]
  policy set                                --site SITE --max-failed-attempts N --failure-window D
  verify                                    --site SITE [--ip IP] [--device-id ID] [--passcode-file F] (default: stdin)
exit codes: 0 ok, 1 failed, 2 usage, 3 no valid token, 4 forbidden, 5 not found, 6 conflict,
7 request refused (400), 8 unavailable (429, 503, unreachable)

Run 'enrollgate serve -h' for the flags; each has an environment variable.
`

// run is the whole program: tests call it with their own arguments,
// environment and writers, on random ports.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if words, rest, ok := adminWords(args); ok {
		return runAdmin(ctx, words, rest, getenv, stdout, stderr)
	}
	cmd := "serve"
	switch {
	case len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help"):
		cmd = "help"
	case len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-':
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := parseConfig("serve", args, getenv, stderr)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stderr)
	case "projections":
		if len(args) == 0 || args[0] != "rebuild" {
			return errors.New("usage: enrollgate projections rebuild [flags]")
		}
		cfg, err := parseConfig("projections rebuild", args[1:], getenv, stderr)
		if err != nil {
			return err
		}
		report, err := app.Rebuild(ctx, cfg, newLogger(cfg, stderr))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rebuilt %s: %d events applied up to sequence %d, %d poison messages skipped, in %s\n",
			filepath.Join(cfg.DataDir, readstore.FileName), report.Applied, report.To, len(report.Poison), report.Elapsed.Round(time.Millisecond))
		return nil
	case "tokens":
		switch {
		case len(args) > 0 && args[0] == "add":
			return addToken(ctx, args[1:], getenv, stdout, stderr)
		case len(args) > 0 && args[0] == "ls":
			return listTokens(ctx, args[1:], getenv, stdout, stderr)
		case len(args) > 0 && args[0] == "revoke":
			return revokeToken(ctx, args[1:], getenv, stdout, stderr)
		}
		return errors.New("usage: enrollgate tokens add|ls|revoke [flags]")
	case "health":
		return health(ctx, args, getenv, stdout, stderr)
	case "keys":
		return keysCommand(args, getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "enrollgate", buildVersion())
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// serve runs the service until ctx is done, then shuts down in order: stop
// accepting, finish in-flight requests, close consumers, stop the server.
func serve(ctx context.Context, cfg app.Config, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	a, err := app.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info().Msg("shutting down")
	return a.Close()
}
