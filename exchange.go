package colonyauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// requestBody is the JSON of an exchange: the key, and a two-factor code if
// there is one.
func requestBody(key, totpCode string) []byte {
	b, _ := json.Marshal(struct { // cannot fail for two strings
		APIKey   string `json:"api_key"`
		TOTPCode string `json:"totp_code,omitempty"`
	}{key, totpCode})
	return b
}

// exchanged is a successful /auth/token answer.
type exchanged struct {
	access    string
	expiresIn int64 // seconds; 0 when absent
}

// state decides the token's expiry: the JWT exp claim, else expires_in,
// else 23 h; values that are already past or absurd are ignored.
func (x exchanged) state(now time.Time) *state {
	sane := func(exp time.Time) bool { d := exp.Sub(now); return d > 0 && d <= maxLifetime }
	if exp, _, ok := jwtClaims(x.access); ok && sane(exp) {
		return newState(x.access, now, exp)
	}
	if x.expiresIn > 0 && x.expiresIn <= int64(maxLifetime/time.Second) {
		return newState(x.access, now, now.Add(time.Duration(x.expiresIn)*time.Second))
	}
	return newState(x.access, now, now.Add(defaultLifetime))
}

// attempt makes one POST /auth/token and classifies its outcome.
func (s *TokenSource) attempt(ctx context.Context) (exchanged, *attemptError) {
	payload := s.payload
	if s.totp != nil {
		var code string
		var err *Error
		if panicked, _ := s.protect("the WithTOTP function", func() error { code, err = s.totpCode(); return nil }); panicked != nil {
			err = panicked
		}
		if err != nil {
			return exchanged{}, &attemptError{err: err, unsent: true}
		}
		payload = requestBody(s.key, code)
	}
	actx := ctx
	if s.client.Timeout == 0 { // bound each attempt even if the client does not
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(actx, http.MethodPost, s.tokenURL, bytes.NewReader(payload))
	if err != nil {
		return exchanged{}, &attemptError{err: &Error{Message: "building the request", Err: s.red.wrap(err)}, unsent: true}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)

	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil { // the exchange's context, not this attempt's timeout
			return exchanged{}, &attemptError{err: &Error{Message: "exchange cancelled", Err: ctx.Err()}, unsent: true}
		}
		return exchanged{}, &attemptError{err: &Error{Message: "cannot reach /auth/token", Err: s.red.wrap(err)}, retry: transient(err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return exchanged{}, &attemptError{err: &Error{StatusCode: resp.StatusCode, Message: "reading the answer failed", Err: s.red.wrap(err)}, retry: transient(err), counted: resp.StatusCode < 500}
	}
	x, aerr := s.classify(resp, data)
	if aerr != nil {
		aerr.counted = resp.StatusCode < 500 // 5xx come from a proxy in front of a server that is down (B20)
	}
	return x, aerr
}

// classify turns one HTTP answer into a token or an attemptError (B1, B3-B5).
func (s *TokenSource) classify(resp *http.Response, data []byte) (exchanged, *attemptError) {
	tooBig := len(data) > maxBody
	if tooBig {
		data = data[:maxBody]
	}
	status := resp.StatusCode
	if status >= 200 && status < 300 {
		msg := "the answer is larger than 1 MiB"
		red := s.red
		if !tooBig {
			var x exchanged
			if x, msg = parseToken(data); msg == "" {
				return x, nil
			}
			red = red.with(x.access) // a refused token is still a secret
		}
		return exchanged{}, &attemptError{err: &Error{StatusCode: status, Message: msg, Err: retrieveError(red, resp, data), kind: ErrMalformedResponse}}
	}
	e := &Error{StatusCode: status, Err: retrieveError(s.red, resp, data)}
	if status >= 300 && status < 400 {
		loc := s.red.message(resp.Header.Get("Location"))
		e.Message = fmt.Sprintf("redirected to %q and not followed, so the api key is not sent there; if the API moved, use that address as the base URL", loc)
		return exchanged{}, &attemptError{err: e}
	}

	e.Code, e.Message = s.red.colonyDetail(status, resp.Header.Get("Content-Type"), data)
	if re, ok := e.Err.(*oauth2.RetrieveError); ok {
		re.ErrorCode, re.ErrorDescription = e.Code, e.Message
	}
	retryAfter := parseRetryAfter(resp.Header.Get("Retry-After"), s.clock.Now())
	// The status decides the class; the Colony's code only refines a
	// 401/403 (a 2FA code on a 429 is still a rate limit, on a 404 a 404).
	switch {
	case (status == http.StatusUnauthorized || status == http.StatusForbidden) && e.Code == "AUTH_2FA_REQUIRED":
		e.kind = ErrTwoFactorRequired
	case (status == http.StatusUnauthorized || status == http.StatusForbidden) && e.Code == "AUTH_2FA_INVALID":
		e.kind = ErrTwoFactorInvalid
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.kind = ErrInvalidKey
	case status == http.StatusTooManyRequests:
		e.kind, e.RetryAfter = ErrRateLimited, retryAfter
		return exchanged{}, &attemptError{err: e, retryAfter: retryAfter}
	case s.retry.retryOn(status):
		return exchanged{}, &attemptError{err: e, retry: true, retryAfter: retryAfter}
	}
	return exchanged{}, &attemptError{err: e}
}

// checkAccessToken says what is wrong with an access token, whether it came
// from /auth/token or from a cache, or "" if nothing.
func checkAccessToken(access string) string {
	if access == "" {
		return "the answer has no access_token"
	}
	if strings.IndexFunc(access, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		return "the access_token contains characters that cannot go in a header"
	}
	return ""
}

// parseToken reads a 2xx body; msg says what is wrong with it, if anything.
func parseToken(data []byte) (x exchanged, msg string) {
	var body struct {
		AccessToken string         `json:"access_token"`
		TokenType   string         `json:"token_type"`
		ExpiresIn   lenientSeconds `json:"expires_in"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return exchanged{}, "the answer's " + typeErr.Field + " has the wrong type"
		}
		return exchanged{}, "the answer is not a JSON object"
	}
	access := body.AccessToken
	x.access = access // kept even when refused, so that it can be redacted
	if msg := checkAccessToken(access); msg != "" {
		return x, msg
	}
	if tt := body.TokenType; tt != "" && !strings.EqualFold(tt, "bearer") {
		return x, fmt.Sprintf("token_type is %q, want bearer", tt)
	}
	x.expiresIn = int64(body.ExpiresIn)
	return x, ""
}

// lenientSeconds reads expires_in as a number or numeric string; anything
// else, or a value out of range, is 0 (absent): a strange expires_in is no
// reason to refuse a token that has its own exp.
type lenientSeconds int64

func (n *lenientSeconds) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(strings.Trim(string(b), `"`), 64)
	if err == nil && f >= 1 && f < 1e15 {
		*n = lenientSeconds(f)
	}
	return nil
}

// colonyDetail reads {"detail": {"code", "message"}} or {"detail": "text"};
// an answer that is not JSON (a proxy's HTML page) gives only a short note.
func (r redactor) colonyDetail(status int, contentType string, data []byte) (code, msg string) {
	var body struct {
		Detail json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(data, &body) != nil {
		if len(bytes.TrimSpace(data)) == 0 {
			return "", ""
		}
		lead := strings.TrimSpace(fmt.Sprintf("%d %s", status, http.StatusText(status)))
		if mt, _, _ := strings.Cut(contentType, ";"); mt != "" {
			return "", lead + ": the answer is " + r.message(mt) + ", not JSON (a proxy in the way?)"
		}
		return "", lead + ": the answer is not JSON (a proxy in the way?)"
	}
	var text string
	if json.Unmarshal(body.Detail, &text) == nil {
		return "", r.message(text)
	}
	var obj struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body.Detail, &obj) == nil {
		return r.message(obj.Code), r.message(obj.Message)
	}
	var list []struct {
		Msg string `json:"msg"`
	}
	if json.Unmarshal(body.Detail, &list) == nil && len(list) > 0 {
		return "", r.message(list[0].Msg)
	}
	return "", ""
}

// retrieveError wraps an answer as oauth2 would, with the body and headers
// redacted and the request detached (it could replay the key).
func retrieveError(red redactor, resp *http.Response, body []byte) *oauth2.RetrieveError {
	r := *resp
	r.Body = http.NoBody
	if resp.Request != nil {
		req := resp.Request.Clone(context.Background())
		req.Body, req.GetBody = nil, nil
		r.Request = req
	}
	r.Header = red.header(resp.Header)
	return &oauth2.RetrieveError{Response: &r, Body: []byte(red.text(string(body)))}
}
