// Package colonyauth turns a Colony API key into an [oauth2.TokenSource].
//
// The Colony issues 24-hour JWTs from POST /auth/token in exchange for an API
// key. A [TokenSource] makes that exchange, caches the token, refreshes it
// at 40–60 % of its life, rides through outages of /auth/token (retrying
// with backoff when it has no token, serving the still-valid one when it
// has), and never hammers the endpoint: rate limits and bad keys are not
// retried, failures are remembered for a cool-down, and one exchange runs at
// a time. Sources that share a cache directory ([WithFileCache]) share the
// host's budget of 30 exchanges an hour, and one of them probes an outage
// for all.
//
// Any oauth2-aware code can use it:
//
//	client := oauth2.NewClient(ctx, colonyauth.New(os.Getenv("COLONY_API_KEY")))
//	resp, err := client.Get(colonyauth.DefaultBaseURL + "/users/me")
//
// [NewClient] does the same and also honours each request's context while
// waiting for a token and retries once, with a new token, after a 401.
package colonyauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"golang.org/x/oauth2"
)

// DefaultBaseURL is the Colony API that New talks to unless WithBaseURL says
// otherwise.
const DefaultBaseURL = "https://thecolony.ai/api/v1"

const (
	version = "0.1.0" // the release this source becomes: .ci/release-check compares it with the CHANGELOG
	// userAgent identifies the package to the Colony on /auth/token.
	userAgent = "colonyauth-go/" + version

	maxBody         = 1 << 20          // bytes read from any /auth/token answer
	attemptTimeout  = 30 * time.Second // bound of one HTTP attempt
	defaultLifetime = 23 * time.Hour   // assumed when the answer says nothing
	maxLifetime     = 366 * 24 * time.Hour
	expiryDelta     = 10 * time.Second // as oauth2's: act this much before an instant
	staleInterval   = 5 * time.Minute  // between refresh attempts while serving a valid token
	minStale        = 4 * time.Minute  // 15 an hour at most, even with jitter
	coolDown        = 30 * time.Second // a remembered failure, when the server named no wait
)

// TokenSource is an oauth2.TokenSource for the Colony. Create it with New;
// it is safe for concurrent use, and one source should be shared by all
// the goroutines of a program that use the same key.
//
// A returned token's Expiry is when the source wants to be asked again (its
// refresh point, never after the real expiry), so that oauth2's
// ReuseTokenSource and NewClient ask in time; tok.Extra("expires_at") is
// the token's real expiry, a time.Time. Returned tokens are shared: treat
// them as read-only.
type TokenSource struct {
	*source // behind a pointer, so that no %v or %+v of a TokenSource value prints its key (B34)
}

// source is a TokenSource's state.
type source struct {
	key       string
	payload   []byte // the request body, when it does not change (no WithTOTP)
	tokenURL  string
	baseURL   string
	client    *http.Client
	clock     clock.Clock
	retry     RetryConfig
	ctx       context.Context
	log       *slog.Logger
	totp      func() (string, error)
	cache     Cache
	cacheKey  string
	ledger    Ledger    // shared with other sources; nil when the cache is none
	own       ownRecord // this source's record when it acts alone
	record    string    // the ledger record of the base URL
	owner     string    // this source's name in the records
	hostLimit int
	red       redactor
	err       error // configuration error: every call returns it

	cur atomic.Pointer[state] // read without locking on the fast path

	mu          sync.Mutex
	flight      *flight               // the exchange in progress, if any
	cacheLoaded bool                  // the cache was read once ...
	loading     *cacheLoad            // ... or is being read
	failErr     *Error                // remembered failure ...
	failUntil   time.Time             // ... returned without a request until this
	failAt      time.Time             // ... and seen at this time
	force       bool                  // the token was invalidated: exchange even within the minute
	rejects     int                   // tokens invalidated within a minute of their exchange, in a row (B27) ...
	lastReject  time.Time             // ... the last at
	aloneErr    atomic.Pointer[error] // why the shared ledger failed: acting alone (B19) ...
	aloneAt     atomic.Int64          // ... since (ms)
	spent       int64                 // when a caller last spent its wait or budget in an outage, ms (B21; flight goroutines only)

	cacheMu sync.Mutex // orders cache writes with Invalidate
	revoked string     // the last invalidated token, never to be stored again
}

// flight is one exchange; callers that need a token wait on done.
type flight struct {
	done  chan struct{}
	stale bool   // a single refresh attempt while the current token is still valid
	force bool   // after Invalidate
	st    *state // the result, set before done is closed
	err   *Error
}

// New returns a TokenSource for apiKey. It sends nothing: the first Token
// call exchanges the key. Bad input (an empty key, a JWT passed as the key,
// an invalid option) is reported as an *Error by every call, never a panic;
// to check a configuration before the first exchange, call Check.
func New(apiKey string, opts ...Option) *TokenSource {
	o := options{baseURL: DefaultBaseURL, clock: clock.New(), retry: defaultRetry, ctx: context.Background(), hostLimit: DefaultHostLimit}
	for _, opt := range opts {
		if opt == nil {
			o.fail("invalid option: nil Option")
			continue
		}
		opt(&o)
	}
	s := &TokenSource{&source{
		key:   apiKey,
		clock: o.clock,
		retry: o.retry,
		ctx:   o.ctx,
		log:   o.logger,
		totp:  o.totp,
		cache: o.cache,
		red:   redactor{}.with(apiKey),
		owner: randomID(),
	}}
	if s.log == nil {
		s.log = discardLogger
	}
	s.baseURL = strings.TrimRight(o.baseURL, "/")
	s.tokenURL = s.baseURL + "/auth/token"
	s.record = ledgerName(s.baseURL)
	s.cacheKey = cacheKey(s.baseURL, apiKey)
	if s.totp != nil {
		// A token minted with a second factor has an entry of its own, so
		// that a source without WithTOTP never loads it: the host broker
		// serves a caller with the key alone only what the key alone
		// gets (B37).
		s.cacheKey = cacheKey(s.baseURL, apiKey+"\x00two-factor")
	}
	if fc, ok := s.cache.(fileCache); ok {
		fc.log = s.log
		s.cache = fc
	}
	if l, ok := s.cache.(Ledger); ok {
		s.ledger, s.hostLimit = l, o.hostLimit
	}
	if s.totp == nil {
		s.payload = requestBody(apiKey, "") // the same for every exchange
	}
	s.client = tokenClient(o)
	for _, err := range []error{o.err, checkKey(apiKey), o.retry.validate(), s.red.checkBaseURL(o.baseURL)} {
		if err != nil {
			s.err = err
			break
		}
	}
	return s
}

// Check reports the configuration error that every call would return (an
// empty or malformed key, an invalid option or base URL), or nil. It sends
// nothing; a key the Colony rejects is found only by the first exchange.
func (s *TokenSource) Check() error {
	if err := s.usable(); err != nil {
		return err
	}
	return nil
}

// usable returns the error of a source that cannot be used, or nil.
func (s *TokenSource) usable() *Error {
	switch {
	case s == nil:
		return configError(nil, "nil *TokenSource: use colonyauth.New")
	case s.source == nil:
		return configError(nil, "zero TokenSource: use colonyauth.New")
	case s.err != nil:
		return s.err.(*Error)
	}
	return nil
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// String describes the source without its key: the base URL and a short
// fingerprint of the key, enough to tell two sources apart in a log.
func (s *TokenSource) String() string {
	if s == nil || s.source == nil {
		return "colonyauth.TokenSource(nil)"
	}
	sum := sha256.Sum256([]byte(s.key))
	return fmt.Sprintf("colonyauth.TokenSource(%s, key sha256:%s)", s.red.text(s.baseURL), hex.EncodeToString(sum[:4]))
}

// GoString is String, so that %#v cannot print the key either.
func (s *TokenSource) GoString() string { return s.String() }

// Format writes String for every verb, for a TokenSource value as for a
// pointer, so that no verb (%v, %+v, %#v, %s, %x, …) can print the key or a
// token (B34).
func (s TokenSource) Format(f fmt.State, _ rune) { io.WriteString(f, (&s).String()) }

// Token returns a valid token, exchanging the key when needed. It runs
// under the WithContext context; it implements oauth2.TokenSource.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	if err := s.usable(); err != nil {
		return nil, err
	}
	return s.TokenContext(s.ctx)
}

// TokenContext is Token bounded by ctx: it returns when ctx ends, with an
// error that errors.Is ctx.Err(), while the exchange itself goes on for
// other callers and for the next call.
//
// A token that is still fresh is returned without locking or allocating.
// Past its refresh point the token is still returned at once while one
// refresh attempt runs in the background (at most one every 5 minutes while
// it fails). Only a caller with no valid token waits for an exchange and its
// retries; if that exchange fails, the error is remembered for a cool-down
// during which calls fail at once without a request.
func (s *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	if s == nil || s.source == nil || s.err != nil {
		return nil, s.usable()
	}
	if st := s.cur.Load(); st != nil && s.clock.Now().Before(st.due) {
		return st.tok, nil
	}
	if ctx == nil {
		return nil, configError(nil, "TokenContext called with a nil context: use context.Background()")
	}
	return s.slow(ctx)
}

func (s *TokenSource) slow(ctx context.Context) (*oauth2.Token, error) {
	loaded, err := s.loadCache(ctx)
	if err != nil {
		return nil, err
	}
	for {
		s.mu.Lock()
		now := s.clock.Now()
		st := s.cur.Load()
		if st != nil && now.Before(st.due) {
			s.mu.Unlock()
			return st.tok, nil
		}
		if st != nil && now.Before(st.expires) {
			// Serve stale: the token is still valid, so the caller never
			// waits; one refresh attempt runs meanwhile. (After a failed
			// attempt, st.due is the time of the next one.)
			f := s.flight
			if f == nil {
				f = s.newFlight(true)
				go s.run(f)
			}
			s.mu.Unlock()
			if loaded { // B6: a process that exits after this call still refreshes
				select {
				case <-f.done:
				case <-ctx.Done():
				}
				if cur := s.cur.Load(); cur != nil && s.clock.Now().Before(cur.expires) {
					return cur.tok, nil
				}
			}
			return st.tok, nil
		}
		f := s.flight
		if f == nil {
			if now.Before(s.failAt) { // the clock stepped back: the wait keeps its length (B31)
				s.failUntil, s.failAt = now.Add(s.failUntil.Sub(s.failAt)), now
			}
			if now.Before(s.failUntil) {
				e := *s.failErr
				e.RetryAfter = roundUp(s.failUntil.Sub(now))
				e.ago, e.known = max(0, now.Sub(s.failAt)), true
				s.mu.Unlock()
				return nil, &e
			}
			f = s.newFlight(false)
			s.mu.Unlock()
			if ctx.Done() == nil {
				s.run(f) // this caller never stops waiting: no goroutine needed
			} else {
				go s.run(f)
			}
		} else {
			s.mu.Unlock()
		}

		select {
		case <-f.done:
			if f.st != nil {
				if f.err != nil {
					return nil, f.err
				}
				return f.st.tok, nil
			}
			if f.stale || f.err == nil {
				continue // the refresh attempt failed and the token has expired: run the full exchange
			}
			return nil, f.err
		case <-ctx.Done():
			return nil, &Error{Message: "gave up waiting for a token", Err: ctx.Err()}
		}
	}
}

// newFlight registers an exchange for run; s.mu must be held. The exchange
// runs under the WithContext context, not the caller's, so that a caller
// who stops waiting neither fails the others nor makes the next caller
// restart the schedule: it ends when it succeeds, fails, or spends its
// budget.
func (s *TokenSource) newFlight(stale bool) *flight {
	f := &flight{done: make(chan struct{}), stale: stale, force: s.force}
	s.flight = f
	return f
}

// run carries out a flight and wakes its waiters, whatever happens: a
// panic in a callback (WithTOTP, a Cache, a Ledger, a RoundTripper) is an
// *Error for this flight, never a held lock or an unclosed wait (B24).
func (s *TokenSource) run(f *flight) {
	var (
		st    *state
		err   *Error
		until time.Time
	)
	defer func() {
		if v := recover(); v != nil {
			st, err, until = nil, s.panicError("the token exchange", v), time.Time{}
		}
		s.finish(f, st, err, until)
	}()
	st, err, until = s.exchange(f)
}

// finish publishes a flight's result and wakes its waiters.
func (s *TokenSource) finish(f *flight, st *state, err *Error, until time.Time) {
	now := s.clock.Now()
	s.mu.Lock()
	defer close(f.done)
	defer s.mu.Unlock()
	s.flight = nil
	if st != nil {
		f.st, f.err = st, err // err: a Cache that panicked on Store fails this call only
		s.cur.Store(st)
		s.failErr, s.failUntil, s.force = nil, time.Time{}, false
		return
	}
	if err == nil && !f.stale {
		err = &Error{Message: "no token was obtained"} // never: an exchange without a token has an error
	}
	f.err = err
	if cur := s.cur.Load(); f.stale && cur != nil && now.Before(cur.expires) {
		// Keep serving the valid token; ask again when the ledger allows, and
		// after a failed attempt not before about 5 minutes (at most 15
		// attempts an hour; B7).
		next := until
		if err != nil && err.Attempts > 0 || next.IsZero() {
			next = laterOf(next, now.Add(s.staleGap()))
		}
		s.cur.Store(cur.askAt(laterOf(next, now.Add(time.Second))))
		return
	}
	if err != nil && until.After(now) && !f.stale { // a refresh's schedule is not a caller's: the ledger knows it
		s.failErr, s.failUntil, s.failAt = err, until, now
	}
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// staleGap is the wait between refresh attempts of a valid token: 5
// minutes, 4 to 5 with jitter.
func (s *TokenSource) staleGap() time.Duration {
	return max(jitter(staleInterval, s.retry.Jitter), minStale)
}

// panicError turns a recovered panic into an *Error; its text is
// redacted, since a panic value may hold anything.
func (s *TokenSource) panicError(what string, v any) *Error {
	return &Error{Message: s.red.message(fmt.Sprintf("%s panicked: %v", what, v))}
}

// protect calls f, turning a panic into an *Error.
func (s *TokenSource) protect(what string, f func() error) (panicked *Error, err error) {
	defer func() {
		if v := recover(); v != nil {
			panicked = s.panicError(what, v)
		}
	}()
	return nil, f()
}
