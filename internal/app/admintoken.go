package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rs/zerolog"

	"github.com/enrollgate/enrollgate/internal/auth"
	"github.com/enrollgate/enrollgate/internal/startup"
)

// adminTokenFile names the file in the data dir that receives the admin token
// created on a cluster's first start.
const adminTokenFile = "admin-token"

// tokensFile is the per-replica tokens file of earlier versions, imported
// into the token bucket once.
const tokensFile = "tokens.json"

// shareTokens gives the store the cluster's token bucket, imports the data
// dir's tokens file of an earlier version, and makes the first admin token
// when the cluster has none. ctx ends at the start's deadline.
func (a *App) shareTokens(ctx context.Context, cfg Config, tokens *auth.Store) error {
	log := a.log.With().Str("component", "tokens").Logger()
	if err := startup.Retry(ctx, a.log, "ensure bucket "+auth.Bucket, func(ctx context.Context) error {
		return tokens.Share(ctx, a.js, auth.ShareConfig{Replicas: cfg.Replicas, Log: log})
	}); err != nil {
		return err
	}
	a.tokens = tokens
	rep, err := tokens.Import(ctx, filepath.Join(cfg.DataDir, tokensFile))
	if err != nil {
		return err
	}
	if rep.RenamedTo != "" {
		log.Info().Int("imported", rep.Imported).Int("kept", rep.Kept).Str("file", rep.RenamedTo).
			Msg("the tokens file was imported into the token bucket " + auth.Bucket + " and renamed")
	}
	return ensureAdminToken(ctx, tokens, cfg, log)
}

// applyTokens gives this replica's NATS server the store's tokens.
func (a *App) applyTokens(ctx context.Context) error {
	if a.access == nil {
		return nil
	}
	a.tokenSync.Lock()
	defer a.tokenSync.Unlock()
	return a.access.Sync(ctx, a.tokens.List())
}

// replicaTokens is the token store as this replica's HTTP API uses it: a
// create or revoke answers once this replica's NATS server follows it too,
// so that a client may connect here the moment it has its token. (Other
// replicas follow their watch of the bucket.)
type replicaTokens struct {
	*auth.Store
	a *App
}

func (t replicaTokens) Create(ctx context.Context, p auth.Principal, createdBy string) (string, auth.TokenInfo, error) {
	token, info, err := t.Store.Create(ctx, p, createdBy)
	if err == nil {
		t.apply(ctx)
	}
	return token, info, err
}

func (t replicaTokens) Delete(ctx context.Context, id string) error {
	err := t.Store.Delete(ctx, id)
	if err == nil {
		t.apply(ctx)
	}
	return err
}

// apply is best effort: the change is stored, and the token watcher applies
// it (and retries) too.
func (t replicaTokens) apply(ctx context.Context) {
	if err := t.a.applyTokens(ctx); err != nil {
		t.a.log.Warn().Err(err).Msg("apply a token change to NATS; the token watcher tries again")
	}
}

// ensureAdminToken creates an admin token for all sites when no token is
// configured or stored, once per cluster, and writes it to
// <data-dir>/admin-token: the token goes to no log line and not to stdout
// (which may be a log collector); the log says only which file holds it.
func ensureAdminToken(ctx context.Context, tokens *auth.Store, cfg Config, log zerolog.Logger) error {
	path := filepath.Join(cfg.DataDir, adminTokenFile)
	if len(tokens.List()) == 0 {
		// Checked before the token is created: one that cannot be written
		// would be valid and known to nobody.
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s is left from an earlier first start, but no API token is stored or configured, so the token in it is not valid: remove the file and start again (with --admin-token if this cluster made its first admin token already)", path)
		}
	}
	token, info, created, err := tokens.EnsureAdmin(ctx, cfg.AdminEmail)
	if err != nil {
		return err
	}
	if !created {
		if len(tokens.List()) == 0 {
			log.Warn().Msg("no API token is stored or configured, and this cluster's first admin token was made before: start a replica with --admin-token to create tokens again")
		}
		return nil
	}
	if err := writeNewFile(path, []byte(token+"\n")); err != nil {
		return fmt.Errorf("the admin token %s was created but not written: start a replica with --admin-token, create another and revoke %s: %w", info.ID, info.ID, err)
	}
	log.Warn().Str("file", path).Str("token_id", info.ID).
		Msg("no API token was configured, so an admin token for all sites was created into this file (mode 0600); keep the token elsewhere and delete the file")
	return nil
}

// writeNewFile writes b to path with mode 0600, atomically and exclusively:
// the file appears complete or not at all, and an existing file (or a
// symbolic link) at path is never replaced or followed.
func writeNewFile(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // O_EXCL, mode 0600
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.Remove(tmp.Name())) }()
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// A hard link fails when path exists: O_EXCL for a file already written.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists already: %w", path, err)
		}
		return err
	}
	// Best effort: the link survives a power loss on most file systems; not
	// every platform can sync a directory.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
