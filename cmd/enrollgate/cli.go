package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Exit codes of the admin commands, so that a script can tell what failed.
const (
	exitFailure      = 1 // anything else: a server error, a bad answer
	exitUsage        = 2 // bad flags or arguments
	exitUnauthorized = 3 // 401: no token or an invalid one
	exitForbidden    = 4 // 403: the token's role does not allow it
	exitNotFound     = 5 // 404: no such site (or not in the token's scope)
	exitConflict     = 6 // 409: e.g. nothing active to disable
	exitInvalid      = 7 // 400, 413, 415: the request was refused
	exitUnavailable  = 8 // 429, 503, or the service could not be reached
)

// cliError carries an admin command's exit code.
type cliError struct {
	code int
	msg  string
}

func (e *cliError) Error() string { return e.msg }

// exitCode is the process's exit code for an error of run.
func exitCode(err error) int {
	var ce *cliError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitFailure
}

func usageError(format string, args ...any) error {
	return &cliError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

// adminClient talks to the HTTP API with a token, for the admin commands.
type adminClient struct {
	base   *url.URL
	token  string
	json   bool
	http   *http.Client
	stdout io.Writer
}

// adminFlags are the flags every admin command takes; the caller adds its
// own to fs before parsing.
type adminFlags struct {
	url, ca string
	json    bool
}

func (f *adminFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	def := getenv("ENROLLGATE_URL")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	fs.StringVar(&f.url, "url", def, "the service's HTTP API ($ENROLLGATE_URL)")
	fs.StringVar(&f.ca, "ca", getenv("ENROLLGATE_CA"), "PEM file of the CA that issued the service's certificate, for https ($ENROLLGATE_CA)")
	fs.BoolVar(&f.json, "json", false, "print the API's JSON instead of a table")
}

// client builds the client; the token comes from $ENROLLGATE_TOKEN only, so
// that it never shows in a process list.
func (f *adminFlags) client(getenv func(string) string, stdout io.Writer) (*adminClient, error) {
	u, err := url.Parse(f.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError("--url %q: want http(s)://host:port", f.url)
	}
	token := getenv("ENROLLGATE_TOKEN")
	if token == "" {
		return nil, &cliError{code: exitUnauthorized, msg: "set ENROLLGATE_TOKEN to an API token"}
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, usageError("--ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageError("--ca %s: no PEM certificate", f.ca)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &adminClient{base: u, token: token, json: f.json, stdout: stdout,
		http: &http.Client{Timeout: 30 * time.Second, Transport: tr}}, nil
}

// problem is the part of an RFC 9457 answer the CLI shows.
type problem struct {
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

// do sends a request and returns the answer's body; an error status becomes
// a cliError with the problem's words and the exit code of its class.
func (c *adminClient) do(ctx context.Context, method, path string, query url.Values, body any) ([]byte, error) {
	u := c.base.JoinPath(path)
	u.RawQuery = query.Encode()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &cliError{code: exitUnavailable, msg: fmt.Sprintf("cannot reach the service at %s: %v", c.base.Redacted(), errors.Unwrap(err))}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, &cliError{code: exitUnavailable, msg: fmt.Sprintf("read the answer: %v", err)}
	}
	if resp.StatusCode < 300 {
		return b, nil
	}
	var p problem
	_ = json.Unmarshal(b, &p)
	msg := p.Detail
	if msg == "" {
		msg = p.Title
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	if p.Code != "" {
		msg += " (" + p.Code + ")"
	}
	return nil, &cliError{code: statusExit(resp.StatusCode), msg: fmt.Sprintf("%s %s: %d %s", method, path, resp.StatusCode, msg)}
}

// doJSON is do, with the answer decoded into out as well.
func (c *adminClient) doJSON(ctx context.Context, method, path string, query url.Values, body, out any) ([]byte, error) {
	b, err := c.do(ctx, method, path, query, body)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("%s %s: the answer does not decode: %w", method, path, err)
	}
	return b, nil
}

func statusExit(status int) int {
	switch status {
	case http.StatusUnauthorized:
		return exitUnauthorized
	case http.StatusForbidden:
		return exitForbidden
	case http.StatusNotFound:
		return exitNotFound
	case http.StatusConflict:
		return exitConflict
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return exitInvalid
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return exitUnavailable
	}
	return exitFailure
}

// print writes the raw JSON with --json, else calls table.
func (c *adminClient) print(b []byte, table func(w *tabwriter.Writer) error) error {
	if c.json {
		var out bytes.Buffer
		if err := json.Indent(&out, b, "", "  "); err != nil {
			return err
		}
		out.WriteByte('\n')
		_, err := c.stdout.Write(out.Bytes())
		return err
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	if err := table(w); err != nil {
		return err
	}
	return w.Flush()
}

// stateDocument is the part of the state document the tables show.
type stateDocument struct {
	Site              string     `json:"site"`
	Status            string     `json:"status"`
	PasscodeID        string     `json:"passcode_id"`
	GeneratedAt       *time.Time `json:"generated_at"`
	GeneratedBy       string     `json:"generated_by"`
	FailedAttempts    int        `json:"failed_attempts"`
	MaxFailedAttempts int        `json:"max_failed_attempts"`
	FailureWindow     string     `json:"failure_window"`
	Locked            bool       `json:"locked"`
	LastFailedAt      *time.Time `json:"last_failed_at"`
	DisabledAt        *time.Time `json:"disabled_at"`
	DisabledBy        string     `json:"disabled_by"`
	DisabledReason    string     `json:"disabled_reason"`
	Mode              string     `json:"mode"`
	ExpiresAt         *time.Time `json:"expires_at"`
	MaxEnrollments    int        `json:"max_enrollments"`
	Enrollments       int        `json:"enrollments"`
	LastEnrolledAt    *time.Time `json:"last_enrolled_at"`
	Retiring          *struct {
		PasscodeID string    `json:"passcode_id"`
		Until      time.Time `json:"until"`
	} `json:"retiring"`
	Seq uint64 `json:"seq"`
}

func (s stateDocument) statusWord() string {
	if s.Locked && s.Status == "active" {
		return "locked"
	}
	return s.Status
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

func whenOr(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return when(t)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeState(w *tabwriter.Writer, s stateDocument) {
	fmt.Fprintf(w, "site\t%s\n", s.Site)
	fmt.Fprintf(w, "status\t%s\n", s.statusWord())
	fmt.Fprintf(w, "passcode id\t%s\n", dash(s.PasscodeID))
	fmt.Fprintf(w, "generated\t%s by %s\n", when(s.GeneratedAt), dash(s.GeneratedBy))
	fmt.Fprintf(w, "failed attempts\t%d of %d in %s (last %s)\n", s.FailedAttempts, s.MaxFailedAttempts, s.FailureWindow, when(s.LastFailedAt))
	fmt.Fprintf(w, "mode\t%s\n", dash(s.Mode))
	if s.Status != "none" {
		fmt.Fprintf(w, "expires\t%s\n", whenOr(s.ExpiresAt, "never"))
		enrollments := strconv.Itoa(s.Enrollments)
		if s.MaxEnrollments > 0 {
			enrollments += " of " + strconv.Itoa(s.MaxEnrollments)
		}
		fmt.Fprintf(w, "enrollments\t%s (last %s)\n", enrollments, when(s.LastEnrolledAt))
	}
	if s.Retiring != nil {
		fmt.Fprintf(w, "retiring\t%s valid until %s\n", s.Retiring.PasscodeID, when(&s.Retiring.Until))
	}
	if s.DisabledAt != nil {
		fmt.Fprintf(w, "disabled\t%s by %s (%s)\n", when(s.DisabledAt), dash(s.DisabledBy), dash(s.DisabledReason))
	}
	fmt.Fprintf(w, "seq\t%d\n", s.Seq)
}

// siteCommand is one admin command: its flags (besides the common ones) and
// what it does.
type siteCommand struct {
	usage string
	flags func(fs *flag.FlagSet, v map[string]*string)
	run   func(ctx context.Context, c *adminClient, site string, v map[string]*string) error
	// noSite: the command does not take --site.
	noSite bool
}

func siteURL(site string, rest ...string) string {
	return "/" + strings.Join(append([]string{"v1", "sites", url.PathEscape(site)}, rest...), "/")
}

// queryOf is the query of the flags named keys that were given.
func queryOf(v map[string]*string, keys ...string) url.Values {
	q := url.Values{}
	for _, k := range keys {
		if *v[k] != "" {
			q.Set(k, *v[k])
		}
	}
	return q
}

func strFlag(names ...string) func(fs *flag.FlagSet, v map[string]*string) {
	return func(fs *flag.FlagSet, v map[string]*string) {
		for _, n := range names {
			v[n] = fs.String(n, "", n)
		}
	}
}

// adminCommands are the admin CLI over the HTTP API, by their words.
var adminCommands = map[string]siteCommand{
	"sites ls": {usage: "list the sites the token may see", noSite: true,
		run: func(ctx context.Context, c *adminClient, _ string, _ map[string]*string) error {
			var doc struct{ Sites []stateDocument }
			b, err := c.doJSON(ctx, "GET", "/v1/sites", nil, nil, &doc)
			if err != nil {
				return err
			}
			return c.print(b, func(w *tabwriter.Writer) error {
				fmt.Fprintln(w, "SITE\tSTATUS\tFAILED\tGENERATED\tBY")
				for _, s := range doc.Sites {
					fmt.Fprintf(w, "%s\t%s\t%d/%d\t%s\t%s\n", s.Site, s.statusWord(), s.FailedAttempts, s.MaxFailedAttempts, when(s.GeneratedAt), dash(s.GeneratedBy))
				}
				return nil
			})
		}},
	"passcode show": {usage: "the passcode's state (never the passcode)",
		run: func(ctx context.Context, c *adminClient, site string, _ map[string]*string) error {
			var s stateDocument
			b, err := c.doJSON(ctx, "GET", siteURL(site, "passcode"), nil, nil, &s)
			if err != nil {
				return err
			}
			return c.print(b, func(w *tabwriter.Writer) error { writeState(w, s); return nil })
		}},
	"passcode generate": {usage: "generate or regenerate the passcode; prints it once (--expires-in 720h, --max-enrollments N, --grace 24h for the old one)",
		flags: strFlag("expires-in", "max-enrollments", "grace"),
		run: func(ctx context.Context, c *adminClient, site string, v map[string]*string) error {
			// Only what is given is sent: the server judges the ranges.
			body := map[string]any{}
			for flagName, field := range map[string]string{"expires-in": "expires_in", "grace": "grace"} {
				if *v[flagName] != "" {
					body[field] = *v[flagName]
				}
			}
			if m := *v["max-enrollments"]; m != "" {
				n, err := strconv.Atoi(m)
				if err != nil {
					return usageError("--max-enrollments takes a whole number, got %q", m)
				}
				body["max_enrollments"] = n
			}
			return c.passcodeAnswer(ctx, "POST", siteURL(site, "passcode"), body)
		}},
	"passcode reveal": {usage: "show the current passcode (recorded in the audit trail)",
		run: func(ctx context.Context, c *adminClient, site string, _ map[string]*string) error {
			return c.passcodeAnswer(ctx, "POST", siteURL(site, "passcode", "reveal"), nil)
		}},
	"passcode disable": {usage: "disable the passcode (and self-service enrollment)",
		run: func(ctx context.Context, c *adminClient, site string, _ map[string]*string) error {
			var doc struct {
				State stateDocument `json:"state"`
			}
			b, err := c.doJSON(ctx, "POST", siteURL(site, "passcode", "disable"), nil, nil, &doc)
			if err != nil {
				return err
			}
			return c.print(b, func(w *tabwriter.Writer) error { writeState(w, doc.State); return nil })
		}},
	"attempts": {usage: "recent enrollment attempts (--outcome failed|succeeded|outdated|mistyped, --limit N)", flags: strFlag("outcome", "limit"),
		run: func(ctx context.Context, c *adminClient, site string, v map[string]*string) error {
			q := queryOf(v, "outcome", "limit")
			var doc struct {
				Attempts []struct {
					Seq            uint64    `json:"seq"`
					At             time.Time `json:"at"`
					Outcome        string    `json:"outcome"`
					FailedAttempts int       `json:"failed_attempts"`
					Source         struct {
						IP       string `json:"ip"`
						DeviceID string `json:"device_id"`
						Platform string `json:"platform"`
					} `json:"source"`
				} `json:"attempts"`
			}
			b, err := c.doJSON(ctx, "GET", siteURL(site, "attempts"), q, nil, &doc)
			if err != nil {
				return err
			}
			return c.print(b, func(w *tabwriter.Writer) error {
				fmt.Fprintln(w, "TIME\tOUTCOME\tCOUNT\tIP\tDEVICE\tPLATFORM")
				for _, a := range doc.Attempts {
					count := "-"
					if a.FailedAttempts > 0 {
						count = strconv.Itoa(a.FailedAttempts)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", a.At.Local().Format(time.DateTime), a.Outcome, count,
						dash(a.Source.IP), dash(quoteUnsafe(a.Source.DeviceID)), dash(quoteUnsafe(a.Source.Platform)))
				}
				return nil
			})
		}},
	"audit": {usage: "the audit trail, newest first (--limit N, --cursor C for the next page)", flags: strFlag("limit", "cursor"),
		run: func(ctx context.Context, c *adminClient, site string, v map[string]*string) error {
			q := queryOf(v, "limit", "cursor")
			var doc struct {
				Entries []struct {
					Seq     uint64    `json:"seq"`
					At      time.Time `json:"at"`
					Type    string    `json:"type"`
					Summary string    `json:"summary"`
				} `json:"entries"`
				NextCursor string `json:"next_cursor"`
			}
			b, err := c.doJSON(ctx, "GET", siteURL(site, "audit"), q, nil, &doc)
			if err != nil {
				return err
			}
			return c.print(b, func(w *tabwriter.Writer) error {
				fmt.Fprintln(w, "SEQ\tTIME\tEVENT\tSUMMARY")
				for _, e := range doc.Entries {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", e.Seq, e.At.Local().Format(time.DateTime), e.Type, e.Summary)
				}
				if doc.NextCursor != "" {
					fmt.Fprintf(w, "\nmore: --cursor %s\n", doc.NextCursor)
				}
				return nil
			})
		}},
	"policy set": {usage: "set the site's lockout policy (--max-failed-attempts N --failure-window 1h [--mode enforce|monitor], enforce when not given)",
		flags: strFlag("max-failed-attempts", "failure-window", "mode"),
		run: func(ctx context.Context, c *adminClient, site string, v map[string]*string) error {
			n, err := strconv.Atoi(*v["max-failed-attempts"])
			if err != nil || *v["failure-window"] == "" {
				return usageError("policy set needs --max-failed-attempts N and --failure-window D (e.g. 1h, 0 for all since generation)")
			}
			body := map[string]any{"max_failed_attempts": n, "failure_window": *v["failure-window"]}
			if *v["mode"] != "" {
				body["mode"] = *v["mode"]
			}
			var doc struct {
				State stateDocument `json:"state"`
			}
			b, err := c.doJSON(ctx, "PUT", siteURL(site, "lockout-policy"), nil, body, &doc)
			if err != nil {
				return err
			}
			return c.print(b, func(w *tabwriter.Writer) error { writeState(w, doc.State); return nil })
		}},
	"verify": {usage: "verify a passcode as a frontend would (--passcode-file F, - for stdin: never on the command line; --ip, --device-id)",
		flags: strFlag("ip", "device-id", "passcode-file"),
		run: func(ctx context.Context, c *adminClient, site string, v map[string]*string) error {
			in := io.Reader(os.Stdin)
			if f := *v["passcode-file"]; f != "" && f != "-" {
				file, err := os.Open(f)
				if err != nil {
					return usageError("--passcode-file: %v", err)
				}
				defer file.Close()
				in = file
			}
			line, err := bufio.NewReader(in).ReadString('\n')
			if err != nil && line == "" {
				return usageError("verify reads the passcode from --passcode-file or stdin: %v", err)
			}
			source := map[string]string{}
			if *v["ip"] != "" {
				source["ip"] = *v["ip"]
			}
			if *v["device-id"] != "" {
				source["device_id"] = *v["device-id"]
			}
			var doc struct {
				OK     bool   `json:"ok"`
				Reason string `json:"reason"`
			}
			b, err := c.doJSON(ctx, "POST", siteURL(site, "enrollments", "verify"), nil,
				map[string]any{"passcode": strings.TrimRight(line, "\r\n"), "source": source}, &doc)
			if err != nil {
				return err
			}
			return c.print(b, func(w *tabwriter.Writer) error {
				if doc.OK {
					fmt.Fprintln(w, "ok")
				} else {
					fmt.Fprintln(w, "refused:", doc.Reason)
				}
				return nil
			})
		}},
}

// passcodeAnswer prints an answer that holds the passcode: on a table
// only the passcode itself, so that `$(enrollgate passcode reveal …)` is it.
func (c *adminClient) passcodeAnswer(ctx context.Context, method, path string, body any) error {
	var doc struct {
		Passcode string `json:"passcode"`
	}
	b, err := c.doJSON(ctx, method, path, nil, body, &doc)
	if err != nil {
		return err
	}
	return c.print(b, func(w *tabwriter.Writer) error { fmt.Fprintln(w, doc.Passcode); return nil })
}

// quoteUnsafe shows text from a device with any non-printable character
// escaped, so that it cannot move the terminal's cursor.
func quoteUnsafe(s string) string {
	q := strconv.QuoteToGraphic(s)
	if q[1:len(q)-1] == s {
		return s
	}
	return q
}

// runAdmin runs the admin command named by words (e.g. "passcode show").
func runAdmin(ctx context.Context, words string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := adminCommands[words]
	fs := flag.NewFlagSet(words, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: enrollgate %s [flags]: %s\n(the token comes from $ENROLLGATE_TOKEN)\n", words, cmd.usage)
		fs.PrintDefaults()
	}
	var common adminFlags
	common.register(fs, getenv)
	site := new(string)
	if !cmd.noSite {
		site = fs.String("site", "", "the site")
	}
	values := map[string]*string{}
	if cmd.flags != nil {
		cmd.flags(fs, values)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &cliError{code: exitUsage, msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if !cmd.noSite && *site == "" {
		return usageError("%s needs --site", words)
	}
	c, err := common.client(getenv, stdout)
	if err != nil {
		return err
	}
	return cmd.run(ctx, c, *site, values)
}

// adminWords finds the admin command that args start with, and the rest.
func adminWords(args []string) (string, []string, bool) {
	if len(args) >= 2 {
		if _, ok := adminCommands[args[0]+" "+args[1]]; ok {
			return args[0] + " " + args[1], args[2:], true
		}
	}
	if len(args) >= 1 {
		if _, ok := adminCommands[args[0]]; ok {
			return args[0], args[1:], true
		}
	}
	return "", nil, false
}
