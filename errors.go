package colonyauth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Sentinel errors. Every error the package returns is an [*Error]; test its
// cause with errors.Is against these values, and read the details (status,
// Colony code, Retry-After, attempts) with errors.As.
var (
	// ErrInvalidKey: the API key was rejected (401/403), or is malformed
	// before anything was sent (empty, whitespace, a JWT instead of a key).
	// Retrying will not help; fix or rotate the key.
	ErrInvalidKey = errors.New("colonyauth: invalid api key")

	// ErrTwoFactorRequired: the account has two-factor authentication and no
	// code was sent. Configure WithTOTP.
	ErrTwoFactorRequired = errors.New("colonyauth: two-factor code required")

	// ErrTwoFactorInvalid: the two-factor code was wrong, reused or
	// malformed. The key is fine; wait for the next code.
	ErrTwoFactorInvalid = errors.New("colonyauth: two-factor code invalid")

	// ErrRateLimited: /auth/token answered 429. The server is counting
	// authentications; the source does not retry before RetryAfter.
	ErrRateLimited = errors.New("colonyauth: rate limited")

	// ErrUnavailable: /auth/token kept failing until the retry budget was
	// spent, or asked (Retry-After) for a longer wait than MaxDelay.
	ErrUnavailable = errors.New("colonyauth: token endpoint unavailable")

	// ErrMalformedResponse: a 2xx answer without a usable bearer token, or an
	// answer larger than 1 MiB. Usually a wrong base URL or a proxy page.
	ErrMalformedResponse = errors.New("colonyauth: malformed token response")
)

// Error is the one error type of the package. It describes a failed token
// exchange, or a configuration problem found before any request was sent
// (then StatusCode and Attempts are 0).
//
// Its text names the status, the Colony code, the attempts made and what to
// do next. It never contains the API key or a token: server messages that
// echo them are redacted.
type Error struct {
	StatusCode int           // HTTP status of the last answer; 0 when there was none
	Code       string        // the Colony's machine code (e.g. AUTH_2FA_INVALID), if any
	Message    string        // the server's or the package's message, trimmed and redacted
	RetryAfter time.Duration // wait before trying again: from Retry-After, or the remembered cool-down
	Attempts   int           // HTTP attempts made for this exchange
	Err        error         // *oauth2.RetrieveError for HTTP failures, or the underlying error

	kind  error         // one of the sentinels, or nil
	local bool          // refused by this host's budget: the Colony was not asked
	ago   time.Duration // a remembered failure: seen this long ago, nothing sent now
	known bool          // ago is set
}

// Is reports whether target is the sentinel that classifies e, so that
// errors.Is(err, ErrRateLimited) works through any wrapping.
func (e *Error) Is(target error) bool { return e.kind != nil && target == e.kind }

// Unwrap returns e.Err, so errors.As finds an *oauth2.RetrieveError and
// errors.Is finds context.DeadlineExceeded or a transport error.
func (e *Error) Unwrap() error { return e.Err }

// Error returns a one-line description: what failed, the facts in
// parentheses, the server's message, and what to do next.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("colonyauth: ")
	b.WriteString(e.summary())
	var facts []string
	if e.StatusCode != 0 {
		facts = append(facts, fmt.Sprintf("status %d %s", e.StatusCode, http.StatusText(e.StatusCode)))
	}
	if e.Code != "" {
		facts = append(facts, "code "+e.Code)
	}
	if e.Attempts > 0 {
		facts = append(facts, plural(e.Attempts, "attempt"))
	}
	if e.known {
		facts = append(facts, "seen "+roundDuration(e.ago).String()+" ago, nothing sent now")
	}
	if e.RetryAfter > 0 && !e.retryHelps() {
		// Retrying will not help: say what the source does, not when to retry.
		facts = append(facts, "nothing will be sent for "+roundDuration(e.RetryAfter).String())
	}
	if len(facts) > 0 {
		b.WriteString(" (" + strings.Join(facts, ", ") + ")")
	}
	if e.Message != "" && !e.local {
		b.WriteString(": " + e.Message)
	}
	if e.Err != nil && e.StatusCode == 0 {
		b.WriteString(": " + redactor{}.text(e.Err.Error())) // a transport or WithTOTP error
	}
	if h := e.hint(); h != "" {
		b.WriteString("; " + h)
	}
	return b.String()
}

// retryHelps reports whether the same call can succeed later by itself:
// after a rate limit or an outage, not after a rejected key or a wrong URL.
func (e *Error) retryHelps() bool { return e.kind == ErrRateLimited || e.kind == ErrUnavailable }

// retryIn is "in 18s", or "later" when no time is known.
func (e *Error) retryIn() string {
	if e.RetryAfter <= 0 {
		return "later"
	}
	return "in " + roundDuration(e.RetryAfter).String()
}

func (e *Error) summary() string {
	if e.local {
		return e.Message // what of this host's budget refused it: the Colony was not asked
	}
	switch e.kind {
	case ErrInvalidKey:
		if e.StatusCode == 0 {
			return "invalid api key"
		}
		return "api key rejected"
	case ErrTwoFactorRequired:
		return "two-factor code required"
	case ErrTwoFactorInvalid:
		return "two-factor code rejected"
	case ErrRateLimited:
		return "rate limited by /auth/token"
	case ErrUnavailable:
		return "/auth/token unavailable"
	case ErrMalformedResponse:
		return "malformed /auth/token response"
	}
	if e.StatusCode != 0 {
		return "/auth/token failed"
	}
	if e.Attempts == 0 && e.Err == nil {
		return "invalid configuration"
	}
	return "token exchange failed"
}

func (e *Error) hint() string {
	switch e.kind {
	case ErrInvalidKey:
		if e.StatusCode == 0 {
			return "pass the Colony API key (col_…), not a token; nothing was sent"
		}
		return "check that the key belongs to this base URL; if it was revoked or rotated, create a new key (retrying will not help)"
	case ErrTwoFactorRequired:
		return "the account has two-factor authentication: use WithTOTP with a function that returns the current code"
	case ErrTwoFactorInvalid:
		if e.StatusCode == 0 {
			return "the WithTOTP function (or --totp-command) must return the current code, not the secret; nothing was sent"
		}
		return "wait for the next code from the authenticator and try again (each code is accepted once); the api key is fine, do not rotate it"
	case ErrRateLimited:
		if e.local {
			return "nothing was sent; the sources sharing this cache share the host's answers (WithHostLimit): try again " + e.retryIn()
		}
		return "too many authentications from this address: try again " + e.retryIn() + ", retrying sooner makes it worse"
	case ErrUnavailable:
		return "the Colony's token endpoint is failing; try again " + e.retryIn() + " (a running program keeps its current token meanwhile)"
	case ErrMalformedResponse:
		return "check that the base URL is the Colony API (…/api/v1) and not a proxy or web page"
	}
	switch e.StatusCode {
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return "check the base URL: it should end in /api/v1"
	}
	return ""
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// configError reports bad input found before any request: the message says
// what was wrong.
func configError(kind error, format string, args ...any) *Error {
	return &Error{Message: fmt.Sprintf(format, args...), kind: kind}
}

// roundDuration rounds d for people: to the second from a second up, else
// to the millisecond (29.999868311s reads 30s).
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// failure is an *Error as a record keeps it.
type failure struct {
	Kind     string `json:"kind,omitempty"`
	Status   int    `json:"status,omitempty"`
	Code     string `json:"code,omitempty"`
	Message  string `json:"msg,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	At       int64  `json:"at,omitempty"` // when it was seen, Unix ms
}

var kinds = map[string]error{
	"invalid_key": ErrInvalidKey, "2fa_required": ErrTwoFactorRequired, "2fa_invalid": ErrTwoFactorInvalid,
	"rate_limited": ErrRateLimited, "unavailable": ErrUnavailable, "malformed": ErrMalformedResponse,
}

// failureOf is e as a record keeps it, its texts redacted with the
// writer's redactor (B28: nothing secret of one agent reaches another).
func failureOf(e *Error, red redactor, now time.Time) *failure {
	f := &failure{Status: e.StatusCode, Code: red.message(e.Code), Message: red.message(e.Message), Attempts: e.Attempts, At: ms(now)}
	for name, k := range kinds {
		if e.kind == k {
			f.Kind = name
		}
	}
	return f
}

// error is the remembered failure f as seen at now, or a bare error when
// there is none (a record written without one).
func (f *failure) error(now time.Time) *Error {
	if f == nil {
		f = &failure{}
	}
	e := &Error{StatusCode: f.Status, Code: f.Code, Message: f.Message, Attempts: f.Attempts, kind: kinds[f.Kind]}
	if f.At > 0 && !now.IsZero() {
		e.ago, e.known = max(0, now.Sub(at(f.At))), true
	}
	return e
}
