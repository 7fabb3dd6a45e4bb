package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/internal/auth"
	"github.com/enrollgate/enrollgate/internal/eventstore"
	"github.com/enrollgate/enrollgate/internal/projector"
	"github.com/enrollgate/enrollgate/internal/readstore"
	"github.com/enrollgate/enrollgate/internal/secrets"
)

// Rebuild rebuilds the read model from sequence 1 of the stream and swaps
// the file in, on the data dir, keys and NATS that Start uses, without
// serving. It refuses while a service holds the data dir: that
// service would keep serving its open read model and miss the swap.
func Rebuild(ctx context.Context, cfg Config, log zerolog.Logger) (projector.Report, error) {
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return projector.Report{}, err
	}
	defer lock.Close()
	url := cfg.NATSURL
	login := cfg.natsClientOptions()
	if url == "" {
		// The rebuild's own server admits no client: no token is needed.
		tokens, err := auth.Open(auth.Config{})
		if err != nil {
			return projector.Report{}, err
		}
		ncfg := embeddedServer(cfg)
		ncfg.Listen = "127.0.0.1:0"
		ns, _, embeddedAuth, err := startEmbedded(cfg, ncfg, tokens, log)
		if err != nil {
			return projector.Report{}, fmt.Errorf("%w (is the service still running on %s?)", err, cfg.DataDir)
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		url, login = ns.ClientURL(), embeddedAuth
	}
	nc, err := nats.Connect(url, nats.Name("enrollgate-rebuild"), login)
	if err != nil {
		return projector.Report{}, fmt.Errorf("connect to NATS at %s: %w", redactURL(url), redactErr(err))
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return projector.Report{}, err
	}
	keeper, err := secrets.Open(secrets.Config{File: cfg.KeysFile, Dir: cfg.DataDir, MACKey: cfg.MACKey, SealKey: cfg.SealKey})
	if err != nil {
		return projector.Report{}, err
	}
	eventAuth, err := eventstore.OpenAuthenticator(ctx, js, keeper)
	if err != nil {
		return projector.Report{}, err
	}
	path := filepath.Join(cfg.DataDir, readstore.FileName)
	tmp := path + ".rebuild"
	storeCfg := readstore.Config{Path: path, Defaults: cfg.Policy, NoSync: true}
	st, report, err := projector.Rebuild(ctx, js, storeCfg, tmp, projector.Config{Auth: eventAuth})
	if err != nil {
		_ = os.Remove(tmp)
		return projector.Report{}, fmt.Errorf("rebuild: %w", err)
	}
	logReplay(log, "read model rebuilt", report)
	if err := st.Close(); err != nil {
		return projector.Report{}, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return projector.Report{}, errors.Join(fmt.Errorf("swap in the rebuilt read model: %w", err), os.Remove(tmp))
	}
	return report, nil
}
