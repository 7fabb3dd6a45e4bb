package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/enrollgate/enrollgate/internal/secrets"
)

// keysCommand is `enrollgate keys init|rotate`.
func keysCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "init" && args[0] != "rotate") {
		return errors.New("usage: enrollgate keys init|rotate --keys-file FILE [flags]")
	}
	sub := args[0]
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("keys-file", getenv("ENROLLGATE_KEYS_FILE"), "the keys file ($ENROLLGATE_KEYS_FILE)")
	dataDir := getenv("ENROLLGATE_DATA_DIR")
	if dataDir == "" {
		dataDir = "./data"
	}
	if sub == "rotate" {
		fs.StringVar(&dataDir, "data-dir", dataDir, "without --keys-file: rotate <data-dir>/keys.json ($ENROLLGATE_DATA_DIR)")
	}
	activate := fs.Duration("activate-after", time.Minute, "rotate: the new keys become current after this; longer than it takes every replica to see the file (they reread it every 5s)")
	var from siteList
	fs.Var(&from, "from", "init: take the keys of this keys file (e.g. a data dir's keys.json); repeat for several; the first one's current keys stay current")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	switch sub {
	case "init":
		if *file == "" {
			return errors.New("keys init: --keys-file is required")
		}
		mac, seal, err := secrets.InitFile(*file, from...)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created %s: current keys %s and %s\n", *file, mac, seal)
	default:
		path := *file
		if path == "" {
			path = filepath.Join(dataDir, secrets.KeyFileName)
		}
		r, err := secrets.RotateFile(path, *activate, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rotated %s: keys %s and %s become current at %s; the older keys stay\n",
			path, r.MAC, r.Seal, r.From.UTC().Format(time.RFC3339))
	}
	return nil
}
