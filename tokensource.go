// Package colonyauth turns a Colony API key into an [oauth2.TokenSource].
//
// The Colony issues 24-hour JWTs from POST /auth/token in exchange for an API
// key. A [TokenSource] makes that exchange, caches the token, refreshes it
// at half its life, rides through outages of /auth/token (retrying with
// backoff when it has no token, serving the still-valid one when it has),
// and never hammers the endpoint: rate limits and bad keys are not retried,
// failures are remembered for a cool-down, and one exchange runs at a time.
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
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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
	version = "0.1.0"
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
// Returned tokens are shared: treat them as read-only.
type TokenSource struct {
	key      string
	payload  []byte // the request body, when it does not change (no WithTOTP)
	tokenURL string
	baseURL  string
	client   *http.Client
	clock    clock.Clock
	retry    RetryConfig
	ctx      context.Context
	log      *slog.Logger
	totp     func() (string, error)
	cache    Cache
	cacheKey string
	red      redactor
	err      error // configuration error: every call returns it

	cur atomic.Pointer[state] // read without locking on the fast path

	mu          sync.Mutex
	flight      *flight   // the exchange in progress, if any
	cacheLoaded bool      // the cache was read once
	failErr     *Error    // remembered failure ...
	failUntil   time.Time // ... returned without a request until this
}

// state is an immutable snapshot of the current token.
type state struct {
	tok     *oauth2.Token // what callers get (&token); Expiry is when the source wants to be asked again
	due     time.Time     // tok.Expiry less the margin: served without locking before this
	expires time.Time     // exp less the margin: served at all (stale) before this
	exp     time.Time     // the token's real expiry
	margin  time.Duration
	token   oauth2.Token // allocated with the state; reached only through tok
}

// newState derives the refresh and expiry instants of a token obtained at
// obtained (or, from a cache, issued then) that expires at exp.
func newState(access string, obtained, exp time.Time) *state {
	life := exp.Sub(obtained)
	margin := min(expiryDelta, life/4)
	return stateAsking(access, obtained.Add(life/2), exp, margin)
}

// stateAsking returns a state whose token asks to be refreshed at ask.
func stateAsking(access string, ask, exp time.Time, margin time.Duration) *state {
	st := &state{due: ask.Add(-margin), expires: exp.Add(-margin), exp: exp, margin: margin}
	st.token = oauth2.Token{AccessToken: access, TokenType: "Bearer", Expiry: ask}
	st.tok = &st.token
	return st
}

// askAt returns a new state for st's token asking to be refreshed at t
// (never after exp). It copies no Token: oauth2.ReuseTokenSource writes to
// the tokens it is given.
func (st *state) askAt(t time.Time) *state {
	return stateAsking(st.tok.AccessToken, minTime(t, st.exp), st.exp, st.margin)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// flight is one exchange; callers that need a token wait on done.
type flight struct {
	done  chan struct{}
	stale bool   // a single refresh attempt while the current token is still valid
	st    *state // the result, set before done is closed
	err   *Error
}

// New returns a TokenSource for apiKey. It sends nothing: the first Token
// call exchanges the key. Bad input (an empty key, a JWT passed as the key,
// an invalid option) is reported as an *Error by every call, never a panic.
func New(apiKey string, opts ...Option) *TokenSource {
	o := options{baseURL: DefaultBaseURL, clock: clock.New(), retry: defaultRetry, ctx: context.Background()}
	for _, opt := range opts {
		if opt == nil {
			o.fail("invalid option: nil Option")
			continue
		}
		opt(&o)
	}
	s := &TokenSource{
		key:   apiKey,
		clock: o.clock,
		retry: o.retry,
		ctx:   o.ctx,
		log:   o.logger,
		totp:  o.totp,
		cache: o.cache,
		red:   redactor{}.with(apiKey),
	}
	if s.log == nil {
		s.log = discardLogger
	}
	s.baseURL = strings.TrimRight(o.baseURL, "/")
	s.tokenURL = s.baseURL + "/auth/token"
	if s.cache != nil {
		s.cacheKey = cacheKey(s.baseURL, apiKey)
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

// String describes the source without its key: the base URL and a short
// fingerprint of the key, enough to tell two sources apart in a log.
func (s *TokenSource) String() string {
	if s == nil {
		return "colonyauth.TokenSource(nil)"
	}
	sum := sha256.Sum256([]byte(s.key))
	return fmt.Sprintf("colonyauth.TokenSource(%s, key sha256:%s)", s.red.text(s.baseURL), hex.EncodeToString(sum[:4]))
}

// GoString is String, so that %#v cannot print the key either.
func (s *TokenSource) GoString() string { return s.String() }

// Token returns a valid token, exchanging the key when needed. It runs
// under the WithContext context; it implements oauth2.TokenSource.
func (s *TokenSource) Token() (*oauth2.Token, error) {
	if s == nil {
		return nil, configError(nil, "Token called on a nil *TokenSource: use colonyauth.New")
	}
	return s.TokenContext(s.ctx)
}

// TokenContext is Token bounded by ctx: it returns when ctx ends, with an
// error that errors.Is ctx.Err(), while the exchange itself goes on for
// other callers and for the next call.
//
// A token that is still fresh is returned without locking or allocating.
// Past half its life the token is still returned at once while one refresh
// attempt runs in the background (at most one every 5 minutes while it
// fails). Only a caller with no valid token waits for an exchange and its
// retries; if that exchange fails, the error is remembered for a cool-down
// during which calls fail at once without a request.
func (s *TokenSource) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	if s == nil {
		return nil, configError(nil, "TokenContext called on a nil *TokenSource: use colonyauth.New")
	}
	if s.err != nil {
		return nil, s.err
	}
	if st := s.cur.Load(); st != nil && s.clock.Now().Before(st.due) {
		return st.tok, nil
	}
	return s.slow(ctx)
}

func (s *TokenSource) slow(ctx context.Context) (*oauth2.Token, error) {
	for {
		s.mu.Lock()
		s.loadCache()
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
			if s.flight == nil {
				go s.run(s.newFlight(true))
			}
			s.mu.Unlock()
			return st.tok, nil
		}
		f := s.flight
		if f == nil {
			if now.Before(s.failUntil) {
				e := *s.failErr
				e.RetryAfter = s.failUntil.Sub(now)
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
			if f.err == nil {
				return f.st.tok, nil
			}
			if f.stale {
				continue // the single refresh attempt failed and the token has expired: run the full exchange
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
	f := &flight{done: make(chan struct{}), stale: stale}
	s.flight = f
	return f
}

func (s *TokenSource) run(f *flight) {
	r := s.retry
	if f.stale {
		r.MaxRetries = 0 // the current token is still valid: no sleeping, try again later
	}
	res, err := s.withRetry(s.ctx, r, s.attempt)
	now := s.clock.Now()

	s.mu.Lock()
	if err == nil {
		f.st = res.state(now)
		s.cur.Store(f.st)
		s.failErr, s.failUntil = nil, time.Time{}
	} else {
		f.err = err
		if !f.stale || !errors.Is(err, ErrUnavailable) || err.RetryAfter > 0 {
			s.remember(err, now) // one failed refresh attempt is not a spent budget
		}
		if cur := s.cur.Load(); f.stale && cur != nil && now.Before(cur.expires) {
			// Keep serving the valid token; ask again in about 5 minutes
			// (at most 15 attempts an hour), or when the server said.
			next := now.Add(max(jitter(staleInterval, s.retry.Jitter), minStale))
			if s.failUntil.After(next) {
				next = s.failUntil
			}
			s.cur.Store(cur.askAt(next))
		}
	}
	s.flight = nil
	s.mu.Unlock()

	if err == nil {
		s.storeCache(f.st) // before waking the waiters: a CLI may exit right after
	}
	close(f.done)
}

// remember keeps a failed exchange's error for a cool-down, so that calls
// in the meantime fail at once without a request: the Retry-After the
// server asked for, else 30 s (up to 60 s with jitter). Failures that sent
// nothing, or that the WithContext context caused, are not remembered.
func (s *TokenSource) remember(err *Error, now time.Time) {
	if err.Attempts == 0 || s.ctx.Err() != nil {
		return
	}
	wait := err.RetryAfter
	if wait <= 0 {
		wait = coolDown + coolDown - jitter(coolDown, s.retry.Jitter)
		err.RetryAfter = wait
	}
	s.failErr, s.failUntil = err, now.Add(wait)
}

// Invalidate tells the source that tok was rejected (the API answered 401):
// if tok is the current token it is dropped, with any remembered failure and
// its cache entry, and the next call exchanges the key again. Any other
// token is ignored, so a late 401 for an old token cannot drop a new one.
func (s *TokenSource) Invalidate(tok *oauth2.Token) {
	if s == nil || tok == nil {
		return
	}
	s.mu.Lock()
	st := s.cur.Load()
	if st == nil || st.tok.AccessToken != tok.AccessToken {
		s.mu.Unlock()
		return
	}
	s.cur.Store(nil)
	s.failErr, s.failUntil = nil, time.Time{}
	s.mu.Unlock()
	s.deleteCache()
}
