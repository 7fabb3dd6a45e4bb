// Package console serves the web console: static HTML, CSS and JavaScript
// modules embedded in the binary, so that it works air-gapped and needs no
// build step. The console is a client of the HTTP API like any other: it
// signs in with an API token kept in the tab (sessionStorage or memory, never
// a cookie or a URL) and sends it as a bearer token.
//
// Every response carries a strict Content-Security-Policy: only this origin,
// no inline script or style, no framing, and Trusted Types enforced, so that
// text from the API can only reach the page as text.
package console
