package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/internal/natstest"
)

// The console's browser tests drive Debian's Chromium, headless, against the
// binary's run function on random ports. Screenshots go to
// $ENROLLGATE_SCREENSHOTS when it is set (for a person to look at, and for
// docs/), else to the test's temp dir.

// chromiumPath finds the browser. Without one the tests fail in CI (CI=true),
// where .ci/run installs it, and are skipped elsewhere.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "the console's browser tests need Chromium at /usr/bin/chromium or in PATH: apt-get install -y chromium"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func screenshotDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("ENROLLGATE_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// page is one browser tab on the console, with what it reported: uncaught
// exceptions, console errors and CSP violations fail the test.
type page struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string

	mu       sync.Mutex
	problems []string
}

func newPage(t *testing.T, base string) *page {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("lang", "en-GB"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	p := &page{t: t, ctx: ctx, base: base, dir: screenshotDir(t)}
	// The first run starts the browser, on a context without a timeout (a
	// timeout there would end the browser); later steps have their own.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		t.Fatalf("start %s: %v", chromiumPath(t), err)
	}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			// A failed API call (4xx) is the console's business and shown
			// in words; anything else (an exception, a CSP violation, a
			// console.error) is a bug.
			if (m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleError) && m.Source != "network" {
				p.report(fmt.Sprintf("%s (%s) %s:%d %s", m.Type, m.Source, m.URL, m.Line+1, m.Text))
			}
		}
	}()
	t.Cleanup(func() {
		cancelCtx()
		<-done
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, pr := range p.problems {
			t.Errorf("browser reported %s", pr)
		}
	})
	return p
}

func (p *page) report(s string) {
	p.mu.Lock()
	p.problems = append(p.problems, s)
	p.mu.Unlock()
}

// do runs actions, bounded in time.
func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("browser: %v", err)
	}
}

func evalJS[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS polls a JavaScript expression until it is true.
func (p *page) waitJS(what, expr string) {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("Boolean("+expr+")"))
		cancel()
		if err == nil && ok {
			return
		}
		if err != nil {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.getElementById('view').innerText`))
			p.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
			p.t.Fatalf("timed out waiting for %s (%s) %s\npage text:\n%s", what, expr, last, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// text is the text of the first element sel matches, as shown.
func (p *page) text(sel string) string {
	p.t.Helper()
	return strings.TrimSpace(evalJS[string](p, fmt.Sprintf(`document.querySelector(%q).innerText`, sel)))
}

func (p *page) click(sel string) {
	p.t.Helper()
	p.do(chromedp.Click(chromedp.CSS(sel)))
}

// typeInto replaces an input's value by typing, as a person would. The
// field is emptied by script (SetValue with "" does not empty it), with the
// input event a person's deleting would fire, so that the page knows the
// field is being edited.
func (p *page) typeInto(sel, value string) {
	p.t.Helper()
	evalJS[bool](p, fmt.Sprintf(`(() => { const el = document.querySelector(%q); el.focus(); el.value = '';
		el.dispatchEvent(new Event('input', {bubbles: true})); return true; })()`, sel))
	p.do(chromedp.SendKeys(chromedp.CSS(sel), value))
}

// hover moves the mouse over the centre of the element.
func (p *page) hover(sel string) {
	p.t.Helper()
	xy := evalJS[[]float64](p, fmt.Sprintf(`(() => { const r = document.querySelector(%q).getBoundingClientRect();
		return [r.x + r.width / 2, r.y + r.height / 2]; })()`, sel))
	p.do(chromedp.MouseEvent(chromedp.MouseMoved, xy[0], xy[1]))
}

// shot saves a screenshot of the viewport as name.png.
func (p *page) shot(name string) {
	p.t.Helper()
	buf, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(p.dir, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot %s", path)
}

func (p *page) open() {
	p.t.Helper()
	p.do(chromedp.Navigate(p.base+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
}

func (p *page) signIn(token string) {
	p.t.Helper()
	p.open()
	p.typeInto("#token", token)
	p.click("#sign-in")
	p.waitJS("signed in", `!document.getElementById('nav').hidden`)
}

func (p *page) signOut() {
	p.t.Helper()
	p.click("#sign-out")
	p.do(chromedp.WaitVisible(chromedp.CSS("#token")))
}

// confirm waits for the confirmation dialog, checks its title, and confirms.
func (p *page) confirm(titleHas string) {
	p.t.Helper()
	p.waitJS("confirmation dialog", `document.getElementById('confirm').open`)
	if title := p.text("#confirm-title"); !strings.Contains(title, titleHas) {
		p.t.Fatalf("confirmation says %q, want %q in it", title, titleHas)
	}
	p.click("#confirm-ok")
	p.waitJS("dialog closed", `!document.getElementById('confirm').open`)
}

// consoleAdminToken is the bootstrap admin (all sites) the console tests sign
// in with.
const consoleAdminToken = "console-test-admin-token-0123456789"

// consoleToken makes a token through the token API, or, on a build without
// it, with `tokens add` on the data dir (the service rereads the file); it
// returns once the service accepts the token.
func consoleToken(t *testing.T, in *instance, dataDir, admin, role, id string, sites ...string) string {
	t.Helper()
	var created struct {
		Token string `json:"token"`
	}
	// A problem document decodes too, with no token in it.
	code, _ := in.do("POST", "/v1/tokens", admin, map[string]any{"role": role, "identity": id, "sites": sites}, &created)
	switch code {
	case http.StatusCreated:
	case http.StatusNotFound:
		args := []string{"tokens", "add", "--data-dir", dataDir, "--role", role, "--id", id}
		for _, s := range sites {
			args = append(args, "--site", s)
		}
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
			t.Fatalf("tokens add: %v\n%s", err, errOut.String())
		}
		created.Token = tokenPattern.FindString(out.String())
	default:
		t.Fatalf("POST /v1/tokens: %d", code)
	}
	if created.Token == "" {
		t.Fatal("no token made")
	}
	natstest.Eventually(t, 10*time.Second, func() error {
		if code, _ := in.do("GET", "/v1/whoami", created.Token, nil, nil); code != http.StatusOK {
			return fmt.Errorf("whoami: %d", code)
		}
		return nil
	})
	return created.Token
}

// verifyWrong sends a wrong passcode from a source of its own: a guess that
// passes the check character, so that it counts (a typo would not).
func verifyWrong(t *testing.T, nc *nats.Conn, site string, i int) verdict {
	t.Helper()
	return verifyNATS(t, nc, site, map[string]any{"passcode": domain.Guess(i), "source": map[string]any{
		"ip": fmt.Sprintf("198.51.100.%d", i), "device_id": fmt.Sprintf("dev-%d", i), "platform": "ios"}})
}

// TestConsoleInBrowser drives the console as an administrator and as an
// auditor: sign in, generate (verified over NATS), reveal, a lockout watched
// in the popup and the monitor, regenerate, disable, a refused policy with
// the server's words, the audit trail paged, the tokens page, and an auditor
// who sees no write button.
func TestConsoleInBrowser(t *testing.T) {
	dataDir := t.TempDir()
	admin := consoleAdminToken
	in := startInstance(t, dataDir, "--admin-token", admin, "--admin-email", "alice@acme.example",
		"--max-failed-attempts", "4", "--failure-window", "1m")
	auditor := consoleToken(t, in, dataDir, admin, "auditor", "auditor@acme.example", "acme")
	frontend := consoleToken(t, in, dataDir, admin, "enrollment", "acme-frontend", "acme")
	base := "http://" + in.httpAddr
	var nc *nats.Conn
	natstest.Eventually(t, 10*time.Second, func() (err error) {
		nc, err = nats.Connect(in.natsURL, nats.Token(frontend), nats.MaxReconnects(0))
		return err
	})
	t.Cleanup(nc.Close)
	if code, _ := in.do("POST", "/v1/sites/beta/passcode", admin, nil, nil); code != http.StatusCreated {
		t.Fatalf("generate beta: %d", code)
	}

	p := newPage(t, base)

	// A bad token is refused in words.
	p.open()
	p.shot("signin")
	p.typeInto("#token", "eg_not-a-token-at-all")
	p.click("#sign-in")
	p.waitJS("refusal", `document.getElementById('signin-error').textContent.includes('refused')`)

	p.signIn(admin)
	if who := p.text("#who"); !strings.Contains(who, "alice@acme.example") || !strings.Contains(who, "admin") {
		t.Fatalf("header shows %q", who)
	}
	p.waitJS("beta listed", `document.querySelector('#sites-body tr[data-site="beta"][data-status="active"]')`)

	// Open acme by its ID (no events yet) and generate its first passcode.
	p.typeInto("#open-site", "acme")
	p.click("#open-site-form button[type=submit]")
	p.waitJS("acme card", `document.querySelector('#card-acme [data-action="generate"]')`)
	p.click(`#card-acme [data-action="generate"]`)
	p.confirm("Generate")
	p.waitJS("new passcode", `document.querySelector('#card-acme [data-role="passcode"]:not(.masked)')`)
	first := p.text(`#card-acme [data-role="passcode"]`)
	if len(first) != 12 {
		t.Fatalf("shown passcode %q is not 12 characters", first)
	}
	p.waitJS("active chip", `document.querySelector('#card-acme .chip[data-status="active"]')`)
	if by := p.text("#card-acme .facts"); !strings.Contains(by, "alice@acme.example") {
		t.Fatalf("card does not say who generated: %q", by)
	}
	// The copy button puts it on the clipboard.
	p.click(`#card-acme [data-action="copy"]`)
	p.waitJS("copied", `document.querySelector('#card-acme .secret-box [role=status]').textContent !== ''`)

	// The passcode the console showed is the one the service verifies.
	if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": first, "source": map[string]any{"ip": "192.0.2.10"}}); !v.OK {
		t.Fatalf("the passcode shown in the console does not verify: %+v", v)
	}

	verifyWrong(t, nc, "acme", 1)

	// Hidden, it leaves the page.
	p.click(`#card-acme [data-action="hide"]`)
	p.waitJS("masked", `document.querySelector('#card-acme [data-role="passcode"].masked')`)
	if evalJS[bool](p, fmt.Sprintf(`document.documentElement.outerHTML.includes(%q)`, first)) {
		t.Fatal("the passcode is still in the page after Hide")
	}

	// A second failure; then the site list's popup, opened by hovering the
	// icon.
	verifyWrong(t, nc, "acme", 2)
	p.click(`#nav-sites`)
	p.waitJS("acme listed", `document.querySelector('#sites-body tr[data-site="acme"] [data-role="failed"]')?.textContent.includes('2 / 4')`)
	p.hover(`tr[data-site="acme"] [data-role="enrollment-icon"]`)
	p.waitJS("popup on hover", `!document.querySelector('tr[data-site="acme"] .popup').hidden`)
	popup := `tr[data-site="acme"] .popup`
	if txt := p.text(popup); !strings.Contains(txt, "alice@acme.example") || !strings.Contains(txt, "2 / 4") {
		t.Fatalf("popup says %q", txt)
	}
	// Reveal: confirmed, recorded, the same passcode.
	p.click(popup + ` [data-action="reveal"]`)
	p.confirm("Reveal")
	p.waitJS("revealed", `document.querySelector('`+popup+` [data-role="passcode"]:not(.masked)')`)
	if got := p.text(popup + ` [data-role="passcode"]`); got != first {
		t.Fatalf("revealed %d characters that are not the passcode", len(got))
	}
	p.click(popup + ` [data-action="hide"]`)
	p.waitJS("masked in popup", `document.querySelector('`+popup+` [data-role="passcode"].masked')`)
	// Hide removed its own button: the popup stays open all the same.
	if evalJS[bool](p, `document.querySelector('`+popup+`').hidden`) {
		t.Fatal("the popup closed on Hide")
	}
	p.shot("popup")

	// A lockout while the popup is open: it shows it without a reload. The
	// last two failures come from one source, which is then throttled (its
	// limit is half the threshold).
	verifyWrong(t, nc, "acme", 3)
	verifyWrong(t, nc, "acme", 3)
	p.waitJS("locked in popup", `document.querySelector('`+popup+` .chip[data-status="locked"]')`)
	p.waitJS("4 of 4 in popup", `document.querySelector('`+popup+` [data-role="failed"]').textContent.includes('4 / 4')`)
	p.waitJS("locked chip in list", `document.querySelector('tr[data-site="acme"][data-status="locked"]')`)
	p.waitJS("disabled after lockout", `document.querySelector('`+popup+`').textContent.includes('Locked after too many failed attempts')`)
	if evalJS[bool](p, `document.querySelector('`+popup+`').hidden`) {
		t.Fatal("the popup closed while it was watched")
	}
	p.waitJS("locked passcode gone", `!document.querySelector('`+popup+` [data-role="passcode"]')`)
	p.shot("popup-locked")
	p.do(chromedp.KeyEvent("\x1b")) // Escape closes the popup

	// The monitor: count against threshold, chart, recent attempts, sources.
	p.click(`tr[data-site="acme"] th a`)
	p.waitJS("monitor", `document.querySelector('#monitor-summary [data-role="count"]')?.textContent === '4 of 4'`)
	p.waitJS("chart bars", `document.querySelectorAll('#monitor-chart rect.bar').length > 0`)
	p.waitJS("recent failures", `document.querySelectorAll('#attempts tr[data-outcome="failed"]').length === 4`)
	p.waitJS("recent success", `document.querySelectorAll('#attempts tr[data-outcome="succeeded"]').length === 1`)
	if txt := p.text("#attempts"); !strings.Contains(txt, "198.51.100.3") || !strings.Contains(txt, "dev-3") {
		t.Fatalf("recent attempts lack their sources: %q", txt)
	}
	p.waitJS("throttled source", `document.getElementById('throttled')?.textContent.includes('198.51.100.3')`)
	p.shot("monitor")

	// Regenerate: asks first, shows a new passcode once, which verifies.
	p.click(`#card-acme [data-action="generate"]`)
	p.confirm("Regenerate")
	p.waitJS("second passcode", `document.querySelector('#card-acme [data-role="passcode"]:not(.masked)')`)
	second := p.text(`#card-acme [data-role="passcode"]`)
	if len(second) != 12 || second == first {
		t.Fatalf("regenerated passcode has %d characters, or is the old one", len(second))
	}
	p.waitJS("active again", `document.querySelector('#card-acme .chip[data-status="active"]')`)
	if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": second, "source": map[string]any{"ip": "192.0.2.11"}}); !v.OK {
		t.Fatalf("regenerated passcode does not verify: %+v", v)
	}
	// The locked passcode, tried again, is outdated: not counted, and shown
	// by the monitor's outdated filter alone.
	if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": first, "source": map[string]any{"ip": "192.0.2.12"}}); v.OK || v.Reason != "outdated" {
		t.Fatalf("the replaced passcode answers %+v, want outdated", v)
	}
	p.waitJS("monitor reset", `document.querySelector('#monitor-summary [data-role="count"]')?.textContent === '0 of 4'`)
	p.do(chromedp.SetValue(chromedp.CSS("#attempts-filter"), "outdated"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('attempts-filter').dispatchEvent(new Event('change'))`))
	p.waitJS("outdated filter", `(() => { const rows = [...document.querySelectorAll('#attempts tbody tr')];
		return rows.length === 1 && rows[0].dataset.outcome === 'outdated' && rows[0].textContent.includes('Outdated passcode') && rows[0].textContent.includes('192.0.2.12'); })()`)
	p.shot("monitor-outdated")
	p.do(chromedp.SetValue(chromedp.CSS("#attempts-filter"), "all"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('attempts-filter').dispatchEvent(new Event('change'))`))
	p.waitJS("all attempts again", `document.querySelectorAll('#attempts tr[data-outcome="failed"]').length === 4`)

	// Regenerate with a grace: the card names the retiring passcode, which
	// still verifies.
	p.click(`#card-acme [data-action="generate"]`)
	p.waitJS("grace field", `document.getElementById('gen-grace-acme')?.offsetParent !== null`)
	p.typeInto("#gen-grace-acme", "1h")
	p.shot("generate-options")
	p.confirm("Regenerate")
	p.waitJS("retiring on card", `document.querySelector('#card-acme [data-role="retiring"]')?.textContent.includes('still valid until')`)
	p.shot("retiring")
	third := p.text(`#card-acme [data-role="passcode"]`)
	if len(third) != 12 || third == second {
		t.Fatalf("third passcode has %d characters, or is the second", len(third))
	}
	if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": second, "source": map[string]any{"ip": "192.0.2.13"}}); !v.OK {
		t.Fatalf("the retiring passcode does not verify in its grace: %+v", v)
	}

	// Disable: asks first; the site is disabled by hand.
	p.click(`#card-acme [data-action="disable"]`)
	p.confirm("Disable")
	p.waitJS("disabled", `document.querySelector('#card-acme .chip[data-status="disabled"]')`)
	var st stateDoc
	if code, _ := in.do("GET", "/v1/sites/acme/passcode", admin, nil, &st); code != http.StatusOK || st.Status != "disabled" || st.DisabledReason != "manual" {
		t.Fatalf("after Disable the service says %d %+v", code, st)
	}
	if v := verifyNATS(t, nc, "acme", map[string]any{"passcode": third}); v.OK || v.Reason != "disabled" {
		t.Fatalf("disabled passcode verifies: %+v", v)
	}
	if evalJS[bool](p, fmt.Sprintf(`document.documentElement.outerHTML.includes(%q)`, third)) {
		t.Fatal("the passcode is still in the page after Disable")
	}

	// A bad policy is refused with the server's words, not JSON.
	p.typeInto("#policy-threshold", "0")
	p.click("#policy-save")
	p.waitJS("policy refused", `document.getElementById('policy-error').textContent !== ''`)
	msg := p.text("#policy-error")
	if !strings.Contains(msg, "max_failed_attempts must be 1 to 1000, got 0") || strings.ContainsAny(msg, "{}") {
		t.Fatalf("policy error says %q", msg)
	}
	p.shot("policy-refused")
	p.typeInto("#policy-threshold", "6")
	p.typeInto("#policy-window", "30m")
	p.do(chromedp.SetValue(chromedp.CSS("#policy-mode"), "monitor"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('policy-mode').dispatchEvent(new Event('change'))`))
	p.click("#policy-save")
	p.waitJS("policy saved", `document.getElementById('policy-notice').textContent.includes('monitor mode: 6 failed attempts in the last 30m')`)
	p.waitJS("monitor chip", `document.querySelector('#card-acme .chip[data-mode="monitor"]')`)
	evalJS[bool](p, `(window.scrollTo(0, 0), true)`)
	p.shot("policy-monitor")
	p.waitJS("monitor follows policy", `document.querySelector('#monitor-summary [data-role="count"]')?.textContent === '0 of 6'`)

	// The audit trail, paged by ten: every entry once, newest first.
	p.do(chromedp.SetValue(chromedp.CSS("#audit-limit"), "10"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('audit-limit').dispatchEvent(new Event('change'))`))
	p.waitJS("page of 10", `document.querySelectorAll('#audit-body tr').length === 10`)
	var seqs []int
	for page := 1; ; page++ {
		p.waitJS(fmt.Sprintf("page %d", page), fmt.Sprintf(`document.getElementById('audit-page').textContent === 'Page %d'`, page))
		seqs = append(seqs, evalJS[[]int](p, `[...document.querySelectorAll('#audit-body tr')].map(r => Number(r.dataset.seq))`)...)
		if !evalJS[bool](p, `!document.getElementById('audit-older').disabled`) {
			break
		}
		if page == 1 {
			p.shot("audit")
		}
		p.click("#audit-older")
		if page > 10 {
			t.Fatal("the audit trail does not end")
		}
	}
	var api struct {
		Entries []struct {
			Seq  int    `json:"seq"`
			Type string `json:"type"`
		} `json:"entries"`
	}
	if code, _ := in.do("GET", "/v1/sites/acme/audit?limit=500", admin, nil, &api); code != http.StatusOK {
		t.Fatalf("audit: %d", code)
	}
	if len(seqs) != len(api.Entries) || len(seqs) <= 10 {
		t.Fatalf("the console paged %d entries, the API has %d (want more than one page)", len(seqs), len(api.Entries))
	}
	types := map[string]bool{}
	for i, e := range api.Entries {
		if seqs[i] != e.Seq {
			t.Fatalf("entry %d: console seq %d, API seq %d", i, seqs[i], e.Seq)
		}
		types[e.Type] = true
	}
	for _, want := range []string{"PasscodeGenerated", "PasscodeRevealed", "PasscodeDisabled", "EnrollmentAttemptFailed", "LockoutPolicyChanged"} {
		if !types[want] {
			t.Errorf("audit trail lacks %s", want)
		}
	}
	p.click("#audit-newest")
	p.waitJS("back to page 1", `document.getElementById('audit-page').textContent === 'Page 1'`)

	// Nothing of the session outside the tab's storage.
	cookie, href := evalJS[string](p, `document.cookie`), evalJS[string](p, `location.href`)
	if cookie != "" || strings.Contains(href, admin) {
		t.Fatalf("the token left the tab's storage: cookie %q, URL %q", cookie, href)
	}

	testTokensPage(t, p, in, admin)

	// An auditor of acme: everything read-only, beta invisible.
	p.signOut()
	if evalJS[bool](p, `sessionStorage.length > 0`) {
		t.Fatal("sign-out left the token in session storage")
	}
	p.signIn(auditor)
	p.waitJS("auditor's list", `document.querySelector('#sites-body tr[data-site="acme"]')`)
	if evalJS[bool](p, `Boolean(document.querySelector('#sites-body tr[data-site="beta"]'))`) {
		t.Fatal("an auditor of acme sees beta")
	}
	if !evalJS[bool](p, `document.getElementById('nav-tokens').hidden`) {
		t.Fatal("an auditor is offered the tokens page")
	}
	p.click(`tr[data-site="acme"] [data-role="enrollment-icon"]`)
	p.waitJS("auditor popup", `!document.querySelector('tr[data-site="acme"] .popup').hidden`)
	p.do(chromedp.KeyEvent("\x1b"))
	p.click(`tr[data-site="acme"] th a`)
	p.waitJS("auditor monitor", `document.querySelector('#monitor-summary [data-role="count"]')`)
	p.waitJS("auditor policy", `document.getElementById('policy-readonly')`)
	p.waitJS("auditor audit", `document.querySelectorAll('#audit-body tr').length > 0`)
	writes := evalJS[[]string](p, `[...document.querySelectorAll('[data-action="generate"],[data-action="reveal"],[data-action="disable"],#policy-form,#policy-save,#token-form')].map(e => e.outerHTML)`)
	if len(writes) > 0 {
		t.Fatalf("an auditor sees write controls: %v", writes)
	}
	if note := p.text("#readonly-note"); !strings.Contains(note, "Read-only") {
		t.Fatalf("read-only note says %q", note)
	}
	p.shot("auditor")
}

// testTokensPage checks the tokens page against the token API when the
// service has it, and that the page hides itself when it has not.
func testTokensPage(t *testing.T, p *page, in *instance, admin string) {
	t.Helper()
	code, _ := in.do("GET", "/v1/tokens", admin, nil, nil)
	if code == http.StatusNotFound {
		if !evalJS[bool](p, `document.getElementById('nav-tokens').hidden`) {
			t.Fatal("the tokens page is offered though GET /v1/tokens answers 404")
		}
		t.Log("GET /v1/tokens answers 404: the tokens page stays hidden")
		return
	}
	if code != http.StatusOK {
		t.Fatalf("GET /v1/tokens: %d", code)
	}
	p.click("#nav-tokens")
	p.do(chromedp.WaitVisible(chromedp.CSS("#token-form")), chromedp.SetValue(chromedp.CSS("#token-role"), "auditor"))
	p.typeInto("#token-identity", "ops@acme.example")
	p.typeInto("#token-sites", "acme")
	p.click("#token-create")
	p.waitJS("token shown once", `document.getElementById('token-secret')`)
	tok := p.text("#token-secret")
	if !tokenPattern.MatchString(tok) {
		t.Fatalf("created token %d characters, not a token", len(tok))
	}
	var who struct {
		ID   string `json:"id"`
		Role string `json:"role"`
	}
	if code, _ := in.do("GET", "/v1/whoami", tok, nil, &who); code != http.StatusOK || who.ID != "ops@acme.example" || who.Role != "auditor" {
		t.Fatalf("the created token: %d %+v", code, who)
	}
	p.waitJS("listed", `[...document.querySelectorAll('#tokens tr')].some(r => r.textContent.includes('ops@acme.example'))`)
	p.shot("tokens")
	p.click("#token-hide")
	p.waitJS("token hidden", `!document.getElementById('token-secret')`)
	p.click(`#tokens tr:has(td:nth-child(2)) [data-action="revoke"][aria-label*="ops@acme.example"]`)
	p.confirm("Revoke")
	p.waitJS("revoked", `![...document.querySelectorAll('#tokens tr')].some(r => r.textContent.includes('ops@acme.example') && !r.textContent.includes('revoked'))`)
	natstestEventuallyRefused(t, in, tok)
	p.click("#nav-sites")
}

// natstestEventuallyRefused waits until the service refuses a revoked token.
func natstestEventuallyRefused(t *testing.T, in *instance, tok string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := in.do("GET", "/v1/whoami", tok, nil, nil)
		if code == http.StatusUnauthorized {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a revoked token still answers %d", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
