package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"
)

// HeaderRequestID carries the request ID in both directions.
const HeaderRequestID = "X-Request-Id"

// requestIDPattern is what a client-supplied request ID must look like to be
// trusted into logs; anything else is replaced.
var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// reqInfo is what the access log learns of a request while it runs.
type reqInfo struct {
	id        string
	principal string
	sw        *statusWriter
}

type infoKey struct{}

func infoFrom(ctx context.Context) *reqInfo {
	info, _ := ctx.Value(infoKey{}).(*reqInfo)
	return info
}

// withRequest gives the request its ID and writes the access log line. The
// line holds method, path (percent-encoded), status, duration, request ID and
// principal: never a body, a query string, a header value or a passcode.
func (a *API) withRequest(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(HeaderRequestID)
		if !requestIDPattern.MatchString(id) {
			id = newRequestID()
		}
		w.Header().Set(HeaderRequestID, id)
		sw := &statusWriter{ResponseWriter: w}
		info := &reqInfo{id: id, sw: sw}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), infoKey{}, info)))
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		ev := a.log.Info()
		if status >= http.StatusInternalServerError {
			ev = a.log.Warn()
		}
		ev.Str("method", r.Method).Str("path", logPath(r)).Int("status", status).
			Dur("duration", time.Since(start)).Int64("bytes", sw.bytes).
			Str("request_id", id).Str("principal", info.principal).Msg("http request")
	})
}

// recoverPanics turns a panic of a handler into a logged 500 problem, so that
// one bad request never takes the process down.
func (a *API) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v) // the server's own way to abort a response
			}
			info := infoFrom(r.Context())
			ev := a.log.Error().Str("panic", fmt.Sprint(v)).Bytes("stack", debug.Stack())
			if info != nil {
				ev = ev.Str("request_id", info.id)
			}
			ev.Str("method", r.Method).Str("path", logPath(r)).Msg("handler panicked")
			if info != nil && info.sw.status != 0 {
				return // headers are out: nothing more can be said
			}
			a.writeProblem(w, r, errors.New("handler panicked"))
		}()
		next.ServeHTTP(w, r)
	})
}

// withTimeout bounds the work of a request.
func (a *API) withTimeout(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), a.cfg.RequestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// logPath is the request's path for a log line, percent-encoded as on the
// wire: the decoded path may hold any character a client chose (%1b, %0a,
// %c2%9b), and the JSON log escapes only some of them.
func logPath(r *http.Request) string { return r.URL.EscapedPath() }

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
