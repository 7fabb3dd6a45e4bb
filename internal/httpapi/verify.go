package httpapi

import (
	"bytes"
	"math"
	"net/http"
	"strconv"

	"github.com/enrollgate/enrollgate/domain"
	"github.com/enrollgate/enrollgate/internal/apierror"
	"github.com/enrollgate/enrollgate/internal/verifywire"
)

// verifyEnrollment is POST /v1/sites/{site}/enrollments/verify: the same
// request and verdict as the NATS endpoint, decoded by the same strict
// decoder, so that both transports accept exactly the same requests. Anything
// malformed is refused before the command runs and never counts as an
// attempt (invariant 6).
func (a *API) verifyEnrollment(w http.ResponseWriter, r *http.Request, c *call) error {
	body, err := a.readBodyLimit(w, r, min(a.cfg.MaxBodyBytes, verifywire.MaxRequestBytes))
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("a JSON request body is required")
	}
	cmd, err := verifywire.DecodeRequest(c.Site, body)
	if err != nil {
		return err // wraps domain.ErrInvalid: 400
	}
	res, err := a.deps.Commands.VerifyPasscode(r.Context(), cmd)
	if err != nil {
		return err
	}
	setSeq(w, res.Seq)
	w.Header().Set("Cache-Control", "no-store")
	status := http.StatusOK // a verdict is a success, whether the passcode was right or not
	if !res.OK && res.Reason == domain.ReasonThrottled {
		status = apierror.Throttled.HTTPStatus()
		secs := max(int64(math.Ceil(res.RetryAfter.Seconds())), 1)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	return writeJSON(w, status, verifywire.ReplyFromResult(res))
}
