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
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

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

// Option configures a TokenSource. Options are checked when the source is
// first used: an invalid one makes every call return an *Error.
type Option func(*options)

type options struct {
	baseURL string
	client  *http.Client
	clock   clock.Clock
	retry   RetryConfig
	ctx     context.Context
	logger  *slog.Logger
	totp    func() (string, error)
	cache   Cache
	err     error // the first invalid option
}

func (o *options) fail(format string, args ...any) {
	if o.err == nil {
		o.err = configError(nil, format, args...)
	}
}

// WithBaseURL sets the Colony API base URL (default DefaultBaseURL). It must
// be https, or http on a loopback address for tests.
func WithBaseURL(u string) Option { return func(o *options) { o.baseURL = u } }

// WithHTTPClient sets the client used for /auth/token. The source uses a
// copy that never follows redirects, so the key cannot leave the host.
// Default: the oauth2.HTTPClient value of the WithContext context, else a
// private client with a 30 s timeout.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) {
		if c == nil {
			o.fail("invalid option: WithHTTPClient(nil)")
			return
		}
		o.client = c
	}
}

// WithClock sets the clock used for expiry, backoff sleeps and cool-downs.
// Tests pass a *clock.Mock to control the schedule exactly.
func WithClock(c clock.Clock) Option {
	return func(o *options) {
		if c == nil {
			o.fail("invalid option: WithClock(nil)")
			return
		}
		o.clock = c
	}
}

// WithRetry sets the backoff schedule of an exchange made while the source
// has no valid token (default DefaultRetry). RetryConfig{} makes a single
// attempt.
func WithRetry(r RetryConfig) Option {
	return func(o *options) {
		r.RetryOn = slices.Clone(r.RetryOn) // the caller may reuse its slice
		o.retry = r
	}
}

// WithContext sets the context that Token runs under and exchanges run
// under (default context.Background()). Cancelling it stops the source's
// exchanges; its oauth2.HTTPClient value, if any, is the HTTP client.
func WithContext(ctx context.Context) Option {
	return func(o *options) {
		if ctx == nil {
			o.fail("invalid option: WithContext(nil)")
			return
		}
		o.ctx = ctx
	}
}

// WithLogger logs each retry at Warn and each new token at Debug. Without
// it the source is silent. Keys and tokens are never logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

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
		red:   redactor{key: apiKey},
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

// tokenClient picks the /auth/token client (WithHTTPClient, else the
// context's oauth2.HTTPClient, else a private one) and returns a copy that
// does not follow redirects.
func tokenClient(o options) *http.Client {
	c := o.client
	if c == nil {
		if hc, ok := o.ctx.Value(oauth2.HTTPClient).(*http.Client); ok && hc != nil {
			c = hc
		}
	}
	if c == nil {
		c = &http.Client{Timeout: attemptTimeout}
	}
	cp := *c
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

func checkKey(k string) error {
	switch {
	case k == "":
		return configError(ErrInvalidKey, "the api key is empty")
	case strings.TrimSpace(k) != k:
		return configError(ErrInvalidKey, "the api key has leading or trailing whitespace (a newline read from a file?)")
	case strings.IndexFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return configError(ErrInvalidKey, "the api key contains whitespace or control characters")
	case strings.HasPrefix(k, "eyJ"):
		return configError(ErrInvalidKey, "this looks like an access token (a JWT), not an api key")
	}
	return nil
}

func (r redactor) checkBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return configError(nil, "invalid base URL %q: want an absolute URL such as %s", r.text(raw), DefaultBaseURL)
	}
	var problem string
	switch {
	case u.User != nil:
		problem = "it must not carry credentials"
	case u.RawQuery != "" || u.Fragment != "":
		problem = "it must not have a query or fragment"
	case u.Scheme == "https", u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		problem = "plain http would expose the api key; use https (http is allowed only on loopback)"
	default:
		problem = "scheme must be https"
	}
	return configError(nil, "invalid base URL %q: %s", r.text(u.Redacted()), problem)
}

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
		code, err := s.totpCode()
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
		return exchanged{}, &attemptError{err: &Error{Message: "building the request", Err: err}, unsent: true}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)

	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil { // the exchange's context, not this attempt's timeout
			return exchanged{}, &attemptError{err: &Error{Message: "exchange cancelled", Err: ctx.Err()}}
		}
		return exchanged{}, &attemptError{err: &Error{Message: "cannot reach /auth/token", Err: err}, retry: transient(err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return exchanged{}, &attemptError{err: &Error{StatusCode: resp.StatusCode, Message: "reading the answer failed", Err: err}, retry: transient(err)}
	}
	return s.classify(resp, data)
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
		if !tooBig {
			var x exchanged
			if x, msg = parseToken(data); msg == "" {
				return x, nil
			}
		}
		return exchanged{}, &attemptError{err: &Error{StatusCode: status, Message: msg, Err: s.retrieveError(resp, data), kind: ErrMalformedResponse}}
	}
	e := &Error{StatusCode: status, Err: s.retrieveError(resp, data)}
	if status >= 300 && status < 400 {
		loc := s.red.message(resp.Header.Get("Location"))
		e.Message = fmt.Sprintf("redirected to %q and not followed, so the api key is not sent there; if the API moved, use that address as the base URL", loc)
		return exchanged{}, &attemptError{err: e}
	}

	e.Code, e.Message = s.red.colonyDetail(resp.Header.Get("Content-Type"), data)
	if re, ok := e.Err.(*oauth2.RetrieveError); ok {
		re.ErrorCode, re.ErrorDescription = e.Code, e.Message
	}
	retryAfter := parseRetryAfter(resp.Header.Get("Retry-After"), s.clock.Now())
	switch {
	case e.Code == "AUTH_2FA_REQUIRED":
		e.kind = ErrTwoFactorRequired
	case e.Code == "AUTH_2FA_INVALID":
		e.kind = ErrTwoFactorInvalid
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.kind = ErrInvalidKey
	case status == http.StatusTooManyRequests:
		e.kind, e.RetryAfter = ErrRateLimited, retryAfter
	case s.retry.retryOn(status):
		return exchanged{}, &attemptError{err: e, retry: true, retryAfter: retryAfter}
	}
	return exchanged{}, &attemptError{err: e}
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
	if access == "" {
		return exchanged{}, "the answer has no access_token"
	}
	if strings.IndexFunc(access, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		return exchanged{}, "the access_token contains characters that cannot go in a header"
	}
	if tt := body.TokenType; tt != "" && !strings.EqualFold(tt, "bearer") {
		return exchanged{}, fmt.Sprintf("token_type is %q, want bearer", tt)
	}
	x = exchanged{access: access}
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
func (r redactor) colonyDetail(contentType string, data []byte) (code, msg string) {
	var body struct {
		Detail json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(data, &body) != nil {
		if len(bytes.TrimSpace(data)) == 0 {
			return "", ""
		}
		if mt, _, _ := strings.Cut(contentType, ";"); mt != "" {
			return "", "the answer is " + r.message(mt) + ", not JSON (a proxy in the way?)"
		}
		return "", "the answer is not JSON (a proxy in the way?)"
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

// retrieveError wraps an answer as oauth2 would, with the body redacted and
// the request detached (it could replay the key).
func (s *TokenSource) retrieveError(resp *http.Response, body []byte) *oauth2.RetrieveError {
	r := *resp
	r.Body = http.NoBody
	if resp.Request != nil {
		req := resp.Request.Clone(context.Background())
		req.Body, req.GetBody = nil, nil
		r.Request = req
	}
	return &oauth2.RetrieveError{Response: &r, Body: []byte(s.red.text(string(body)))}
}
