package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "enrollgate:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: enrollgate [command] [flags]

commands:
  serve                  run the service (the default)
  projections rebuild    rebuild the read model from the event stream, then exit
  tokens add             create an API token: --role admin|auditor|enrollment --id NAME [--site SITE ...]
  tokens ls              list the API tokens (without their secrets)
  tokens revoke ID       revoke an API token; a running service drops it within seconds
  keys init              create a keys file the replicas share: --keys-file FILE [--from data/keys.json ...]
  keys rotate            add new current keys to a keys file, keeping the old: --keys-file FILE [--activate-after 1m]
  version                print the version

Run 'enrollgate serve -h' for the flags; each has an environment variable.
`

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// run is the whole program: tests call it with their own arguments,
// environment and writers, on random ports.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
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
		return rebuildProjections(ctx, cfg, stdout, stderr)
	case "tokens":
		switch {
		case len(args) > 0 && args[0] == "add":
			return addToken(args[1:], getenv, stdout, stderr)
		case len(args) > 0 && args[0] == "ls":
			return listTokens(args[1:], getenv, stdout, stderr)
		case len(args) > 0 && args[0] == "revoke":
			return revokeToken(args[1:], getenv, stdout, stderr)
		}
		return errors.New("usage: enrollgate tokens add|ls|revoke [flags]")
	case "keys":
		return keysCommand(args, getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "enrollgate", version)
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
func serve(ctx context.Context, cfg config, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	app, err := start(ctx, cfg, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info().Msg("shutting down")
	return app.Close()
}
