package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"
)

// HeaderSeq carries the stream sequence of the event a write stored.
const HeaderSeq = "Enrollgate-Seq"

// readBody reads the whole body, at most MaxBodyBytes (a larger one is an
// *http.MaxBytesError: 413), and checks that a non-empty body is JSON.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return a.readBodyLimit(w, r, a.cfg.MaxBodyBytes)
}

// readBodyLimit is readBody with a route's own, lower limit.
func (a *API) readBodyLimit(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, err
		}
		return nil, badRequest("reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(b)) > 0 {
		if ct := r.Header.Get("Content-Type"); ct != "" {
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
				return nil, errUnsupportedMedia
			}
		}
	}
	return b, nil
}

// decodeBody reads the body into dst: exactly one JSON value, no unknown
// fields. An empty body leaves dst as it is when allowEmpty, and is an error
// otherwise.
func (a *API) decodeBody(w http.ResponseWriter, r *http.Request, dst any, allowEmpty bool) error {
	b, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if allowEmpty {
			return nil
		}
		return badRequest("a JSON request body is required")
	}
	return decodeJSON(b, dst)
}

// decodeJSON decodes exactly one JSON value with no unknown fields into dst,
// and words its errors for the client, naming the field where it can. It never
// quotes the values of the body: they may hold a passcode.
func decodeJSON(b []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("the request body must hold exactly one JSON value")
	}
	return nil
}

func jsonError(err error) error {
	var (
		syntax    *json.SyntaxError
		typeError *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntax):
		return badRequest("malformed JSON at byte %d", syntax.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: the body ends too early")
	case errors.As(err, &typeError):
		if typeError.Field == "" {
			return badRequest("the request body must be a JSON object")
		}
		return badRequest("field %s must be %s", typeError.Field, kindName(typeError.Type))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if len(name) > 66 {
			name = name[:64] + "…"
		}
		return badRequest("unknown field %s", name)
	default:
		return badRequest("malformed JSON")
	}
}

func kindName(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "of another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "of another type"
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err // nothing written yet: the caller answers 500
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// setSeq puts the stream sequence of a stored event in its header.
func setSeq(w http.ResponseWriter, seq uint64) {
	if seq > 0 {
		w.Header().Set(HeaderSeq, strconv.FormatUint(seq, 10))
	}
}
