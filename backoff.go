package colonyauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RetryConfig is the backoff schedule of one token exchange. Its zero value
// makes a single attempt; DefaultRetry is what New uses.
//
// Delays double from BaseDelay up to MaxDelay. Every sleep goes through the
// clock given WithClock, so tests control the schedule exactly.
type RetryConfig struct {
	MaxRetries int           // retries after the first attempt; 0 = single attempt
	BaseDelay  time.Duration // delay before the first retry; 0 = 2s
	MaxDelay   time.Duration // cap of any delay, and of an accepted Retry-After; 0 = 60s
	RetryOn    []int         // statuses retried; nil = {502, 503, 504}; 401, 403 and 429 are never retried
	Jitter     float64       // 0 = exact schedule; j in (0,1]: each delay drawn from [d*(1-j), d]
}

// DefaultRetry returns the schedule New uses: 7 attempts with 2, 4, 8, 16,
// 32 and 60 s between them (a 122 s budget), retrying 502, 503 and 504.
// It rides through a restart or short outage of /auth/token at start-up.
func DefaultRetry() RetryConfig {
	r := defaultRetry
	r.RetryOn = slices.Clone(defaultRetryOn)
	return r
}

var (
	defaultRetryOn = []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}
	// defaultRetry is DefaultRetry with RetryOn nil, which means defaultRetryOn.
	defaultRetry = RetryConfig{MaxRetries: 6, BaseDelay: 2 * time.Second, MaxDelay: 60 * time.Second}
)

// Delay returns the sleep before retry n+1 (n counts from 0), without
// jitter: min(BaseDelay*2^n, MaxDelay). It never overflows: for any valid
// config the result lies in [0, MaxDelay].
func (r RetryConfig) Delay(n int) time.Duration {
	d, max := r.baseDelay(), r.maxDelay()
	for i := 0; i < n && d < max; i++ {
		if d > max/2 {
			return max // doubling would pass max, or overflow
		}
		d *= 2
	}
	return min(d, max)
}

// Budget returns the sum of all delays of a failing exchange: the longest a
// caller without a valid token waits, apart from the attempts themselves.
// It is 122s for DefaultRetry. It saturates instead of overflowing: for any
// valid config it lies in [0, MaxRetries*MaxDelay] (at most math.MaxInt64).
func (r RetryConfig) Budget() time.Duration {
	var total time.Duration
	for n := 0; n < r.MaxRetries; n++ {
		d := r.Delay(n)
		if d == r.maxDelay() { // every later delay is the same: multiply, saturating
			left := time.Duration(r.MaxRetries - n)
			if d > 0 && left > (math.MaxInt64-total)/d {
				return math.MaxInt64
			}
			return total + left*d
		}
		if total > math.MaxInt64-d {
			return math.MaxInt64
		}
		total += d
	}
	return total
}

func (r RetryConfig) baseDelay() time.Duration {
	if r.BaseDelay == 0 {
		return 2 * time.Second
	}
	return r.BaseDelay
}

func (r RetryConfig) maxDelay() time.Duration {
	if r.MaxDelay == 0 {
		return 60 * time.Second
	}
	return r.MaxDelay
}

func (r RetryConfig) retryOn(status int) bool {
	if r.RetryOn == nil {
		return slices.Contains(defaultRetryOn, status)
	}
	return slices.Contains(r.RetryOn, status)
}

// validate reports a configuration that cannot be meant, instead of
// clamping it silently.
func (r RetryConfig) validate() error {
	switch {
	case r.MaxRetries < 0:
		return configError(nil, "invalid RetryConfig: MaxRetries is %d, want 0 or more (0 = one attempt)", r.MaxRetries)
	case r.BaseDelay < 0 || r.MaxDelay < 0:
		return configError(nil, "invalid RetryConfig: negative delay (BaseDelay %v, MaxDelay %v)", r.BaseDelay, r.MaxDelay)
	case r.maxDelay() < r.baseDelay():
		return configError(nil, "invalid RetryConfig: MaxDelay %v is less than BaseDelay %v", r.maxDelay(), r.baseDelay())
	case !(r.Jitter >= 0 && r.Jitter <= 1): // also rejects NaN
		return configError(nil, "invalid RetryConfig: Jitter is %v, want a value in [0, 1]", r.Jitter)
	}
	for _, s := range r.RetryOn {
		if s < 400 || s > 599 || s == http.StatusUnauthorized || s == http.StatusForbidden || s == http.StatusTooManyRequests {
			return configError(nil, "invalid RetryConfig: cannot retry status %d (only 4xx/5xx; never 401, 403 or 429)", s)
		}
	}
	return nil
}

// jitter draws d from [d*(1-j), d]; it returns d when j is 0.
func jitter(d time.Duration, j float64) time.Duration {
	if j == 0 || d <= 0 {
		return d
	}
	return d - time.Duration(rand.Float64()*j*float64(d))
}

// attemptError is the outcome of one failed HTTP attempt.
type attemptError struct {
	err        *Error        // what the caller sees if this is the last attempt
	retry      bool          // worth another attempt
	counted    bool          // an answer from the Colony itself (2xx, 3xx, 4xx): it counts against the host's hour
	unsent     bool          // failed before a request was sent, or cancelled: nothing to remember
	retryAfter time.Duration // the server's Retry-After, 0 if none
}

// exchange carries out a flight: attempts, each cleared by the ledger, until
// a token, a failure that retrying cannot help, or a spent budget; between
// attempts it sleeps on the injected clock. A failure comes with the time
// before which nothing may be sent again (zero: not remembered).
func (s *TokenSource) exchange(f *flight) (*state, *Error, time.Time) {
	ctx := s.ctx
	n := need{owner: s.owner, key: s.cacheKey, stale: f.stale, force: f.force, limit: s.hostLimit, retry: s.retry, spent: s.spent, red: s.red}
	if cur := s.cur.Load(); f.stale && cur != nil {
		n.early = cur.exp.Sub(s.clock.Now()) > urgentLeft
		n.exp = cur.expires
	} else {
		n.deadline = s.clock.Now().Add(s.retry.Budget()) // B21: as long as its own schedule would last
	}
	said := false
	for attempts := 0; ; {
		v, err := s.gate(n)
		if err != nil {
			return nil, err, time.Time{}
		}
		switch v.act {
		case deny:
			if v.spent {
				s.spent = ms(s.clock.Now())
			}
			return nil, v.err, v.until
		case wait:
			if v.behind && !said {
				said = true
				s.log.Warn("colonyauth: /auth/token is failing and another source sharing the cache probes it; waiting for its attempts",
					"for", roundDuration(n.deadline.Sub(s.clock.Now())))
			}
			if err := s.sleep(ctx, max(v.wait, pollInterval)); err != nil { // never a busy loop, whatever the record says
				return nil, err, time.Time{}
			}
			continue
		case reload: // another source of this key got a token within the minute
			if st := s.reloadCache(); st != nil {
				return st, nil, time.Time{}
			}
			if f.stale {
				return nil, nil, v.until
			}
			if err := s.sleep(ctx, max(v.until.Sub(s.clock.Now()), pollInterval)); err != nil {
				return nil, err, time.Time{}
			}
			continue
		}

		res, aerr := s.attempt(ctx)
		now := s.clock.Now()
		if aerr == nil {
			st := res.state(now)
			panicked := s.storeCache(st) // before the ledger says so: another process may load it at once
			s.note(n, outcome{counted: true, life: st.exp.Sub(now)}, v.slot, now)
			s.log.Debug("colonyauth: token obtained", "attempts", attempts+1)
			return st, panicked, time.Time{} // a panicking Cache fails this call, not the token
		}
		e := aerr.err
		if aerr.unsent {
			e.Attempts = attempts
			s.note(n, outcome{released: true}, v.slot, now)
			return nil, e, time.Time{}
		}
		attempts++
		e.Attempts = attempts
		goOn, next := s.note(n, outcome{err: e, counted: aerr.counted, retried: aerr.retry, retryAfter: aerr.retryAfter}, v.slot, now)
		switch {
		case !aerr.retry:
			return nil, e, now.Add(e.RetryAfter)
		case !goOn:
			if !f.stale {
				s.spent = ms(now) // later calls in this outage do not wait again (B18, B21)
			}
			e = unavailable(e, roundUp(next.Sub(now)))
			return nil, e, next
		}
		delay := roundUp(next.Sub(now)) // the record keeps milliseconds
		if aerr.retryAfter == 0 {
			delay = jitter(delay, s.retry.Jitter)
		}
		s.log.Warn("colonyauth: token exchange failed, retrying",
			"attempt", attempts, "status", e.StatusCode, "error", e.logText(), "delay", roundDuration(delay))
		if err := s.sleep(ctx, delay); err != nil {
			err.Attempts = attempts
			return nil, err, time.Time{}
		}
	}
}

// sleep waits d on the injected clock, or until ctx ends.
func (s *TokenSource) sleep(ctx context.Context, d time.Duration) *Error {
	if d <= 0 {
		return nil
	}
	t := s.clock.Timer(d)
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		t.Stop()
		return &Error{Message: "gave up waiting to retry", Err: ctx.Err()}
	}
}

// unavailable turns the last attempt's failure into ErrUnavailable.
func unavailable(last *Error, retryAfter time.Duration) *Error {
	e := *last
	e.kind = ErrUnavailable
	e.RetryAfter = retryAfter
	return &e
}

// logText is the short cause of a failed attempt for a log line.
func (e *Error) logText() string {
	if e.StatusCode == 0 && e.Err != nil {
		return redactor{}.text(e.Err.Error()) // already redacted with the key when wrapped
	}
	return e.Message
}

// parseRetryAfter reads delta-seconds or an HTTP date; 0 means absent or
// already past. Absurd values are capped at a day.
func parseRetryAfter(v string, now time.Time) time.Duration {
	const maxWait = 24 * time.Hour
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(maxWait/time.Second) {
			return maxWait
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	if d > maxWait {
		return maxWait
	}
	return d.Round(time.Second)
}

// transient reports whether a transport error is worth another attempt:
// refused or reset connections, timeouts, unexpected EOF and temporary DNS
// failures are; unknown hosts, TLS and certificate errors are not.
func transient(err error) bool {
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		recErr  tls.RecordHeaderError
		uaErr   x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
		netErr  net.Error
		opErr   *net.OpError
	)
	switch {
	case errors.As(err, &dnsErr):
		return !dnsErr.IsNotFound && (dnsErr.IsTemporary || dnsErr.IsTimeout)
	case errors.As(err, &certErr), errors.As(err, &recErr), errors.As(err, &uaErr),
		errors.As(err, &hostErr), errors.As(err, &invErr):
		return false
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return true
	case errors.As(err, &netErr) && netErr.Timeout():
		return true
	case errors.As(err, &opErr):
		return true // other socket-level failures: the network, not the request
	}
	return false
}

// discardLogger is used when no logger is given: the package is silent.
var discardLogger = slog.New(slog.DiscardHandler)
