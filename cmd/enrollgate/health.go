package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// health is `enrollgate health`: it asks a running service's /readyz and
// returns nil when it is ready, else an error with the reason. It is the
// container's health check: the distroless image has no shell or curl.
func health(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := getenv("ENROLLGATE_HTTP_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	fs.StringVar(&addr, "http", addr, "the service's HTTP listen address ($ENROLLGATE_HTTP_ADDR); an unspecified host (0.0.0.0, [::]) is asked on loopback")
	base := fs.String("url", "", "the service's base URL instead of --http, e.g. https://eg1.example:8080")
	caFile := fs.String("tls-ca", "", "PEM file of the CAs to trust for HTTPS; empty: the system's")
	serverName := fs.String("tls-server-name", "", "the name the service's certificate must hold; empty: the URL's host")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	target, err := readyzURL(*base, addr, getenv("ENROLLGATE_TLS_CERT") != "")
	if err != nil {
		return err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: *serverName}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("--tls-ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--tls-ca %s: no PEM certificate", *caFile)
		}
	}
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{TLSClientConfig: tc, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	if resp.StatusCode == http.StatusOK {
		fmt.Fprintln(stdout, "ready")
		return nil
	}
	var problem struct {
		Detail string `json:"detail"`
		Code   string `json:"code"`
	}
	reason := http.StatusText(resp.StatusCode)
	if json.Unmarshal(body, &problem) == nil && problem.Detail != "" {
		reason = problem.Detail
	}
	return fmt.Errorf("not ready: %s answered %d: %s", target, resp.StatusCode, reason)
}

// readyzURL is the /readyz URL of base, or else of the listen address addr
// (HTTPS when the service has a certificate).
func readyzURL(base, addr string, serviceTLS bool) (string, error) {
	if base != "" {
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", errors.New("--url: want a base URL such as http://127.0.0.1:8080")
		}
		if u.User != nil {
			return "", errors.New("--url: must not hold credentials")
		}
		u.Path, u.RawQuery, u.Fragment = strings.TrimSuffix(u.Path, "/")+"/readyz", "", ""
		return u.String(), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--http %q: want host:port: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	scheme := "http"
	if serviceTLS {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/readyz", nil
}
