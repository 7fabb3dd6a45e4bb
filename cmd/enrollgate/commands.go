package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enrollgate/enrollgate/internal/auth"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/natsserver"
	"github.com/enrollgate/enrollgate/internal/projector"
	"github.com/enrollgate/enrollgate/internal/readstore"
	"github.com/enrollgate/enrollgate/internal/secrets"
)

// addToken creates an API token in the data dir's tokens file and prints it
// once. A running service rereads the file within a second.
func addToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tokens add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := getenv("ENROLLGATE_DATA_DIR")
	if dataDir == "" {
		dataDir = "./data"
	}
	fs.StringVar(&dataDir, "data-dir", dataDir, "data dir holding tokens.json ($ENROLLGATE_DATA_DIR)")
	role := fs.String("role", "", "admin, auditor or enrollment")
	id := fs.String("id", "", "the identity recorded for the token: an administrator's email, or a service name")
	var sites siteList
	fs.Var(&sites, "site", "a site the token may see; repeat for several; omit for all sites")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(sites) == 0 {
		sites = siteList{auth.AllSites}
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	store, err := auth.Open(auth.Config{File: filepath.Join(dataDir, "tokens.json")})
	if err != nil {
		return err
	}
	token, err := store.Add(auth.Principal{ID: *id, Role: auth.Role(*role), Sites: sites})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", token)
	fmt.Fprintf(stderr, "token for %s (%s on %s) created; it is shown only this once.\n",
		*id, *role, strings.Join(sites, ","))
	return nil
}

type siteList []string

func (s *siteList) String() string     { return strings.Join(*s, ",") }
func (s *siteList) Set(v string) error { *s = append(*s, v); return nil }

// rebuildProjections rebuilds the read model from sequence 1 of the stream
// and swaps the file in. It refuses while a service holds the data dir: that
// service would keep serving its open read model and miss the swap.
func rebuildProjections(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	url := cfg.NATSURL
	login := cfg.natsClientOptions()
	if url == "" {
		tokens, err := auth.Open(auth.Config{File: filepath.Join(cfg.DataDir, "tokens.json")})
		if err != nil {
			return err
		}
		ns, _, embeddedAuth, err := startEmbedded(cfg, natsserver.Config{Listen: "127.0.0.1:0", StoreDir: filepath.Join(cfg.DataDir, "jetstream"),
			SyncAlways: cfg.SyncAlways}, tokens, log)
		if err != nil {
			return fmt.Errorf("%w (is the service still running on %s?)", err, cfg.DataDir)
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		url, login = ns.ClientURL(), embeddedAuth
	}
	nc, err := nats.Connect(url, nats.Name("enrollgate-rebuild"), login)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", redactURL(url), redactErr(err))
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	keeper, err := secrets.Open(secrets.Config{File: cfg.KeysFile, Dir: cfg.DataDir, MACKey: cfg.MACKey, SealKey: cfg.SealKey})
	if err != nil {
		return err
	}
	eventAuth, err := eventstore.OpenAuthenticator(ctx, js, keeper)
	if err != nil {
		return err
	}
	path := filepath.Join(cfg.DataDir, readstore.FileName)
	tmp := path + ".rebuild"
	storeCfg := readstore.Config{Path: path, Defaults: cfg.Policy, NoSync: true}
	st, report, err := projector.Rebuild(ctx, js, storeCfg, tmp, projector.Config{Auth: eventAuth})
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rebuild: %w", err)
	}
	logReplay(log, "read model rebuilt", report)
	if err := st.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(fmt.Errorf("swap in the rebuilt read model: %w", err), os.Remove(tmp))
	}
	fmt.Fprintf(stdout, "rebuilt %s: %d events applied up to sequence %d, %d poison messages skipped, in %s\n",
		path, report.Applied, report.To, len(report.Poison), report.Elapsed.Round(1e6))
	return nil
}
