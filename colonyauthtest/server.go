// Package colonyauthtest is a fake Colony API for tests, in the manner of
// net/http/httptest: start one, point the code under test at its URL, and
// script outages, rate limits and revocations.
//
//	srv := colonyauthtest.NewServer()
//	defer srv.Close()
//	src := colonyauth.New(srv.APIKey, colonyauth.WithBaseURL(srv.URL))
//
// It serves POST /auth/token as the Colony does (HS256 JWTs with exp,
// {"detail": …} errors, optional two-factor codes) and GET /users/me, which
// checks the bearer token's signature, expiry and revocation and answers
// 401 like the real API. It never logs or records an API key.
package colonyauthtest

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"
)

// DefaultLifetime is the life of the tokens the server issues, as on the
// real Colony.
const DefaultLifetime = 24 * time.Hour

// Server is a fake Colony. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL of the API, ending in /api/v1: pass it to
	// colonyauth.WithBaseURL.
	URL string
	// APIKey is a key the server accepts (a fresh random one per server,
	// unless WithAPIKey set it).
	APIKey string

	http   *httptest.Server // nil for a server made by NewUnstarted
	clock  clock.Clock
	secret []byte

	mu        sync.Mutex
	lifetime  time.Duration
	totp      string
	fail      []outcome // answers for the next exchanges, in order
	down      *outcome  // answer of every exchange while down
	latency   time.Duration
	revoked   int // tokens of earlier generations are rejected
	issued    int
	requests  []Request
	exchanges int
	limit     int                    // answers per client address and rolling hour; 0 = none
	answered  map[string][]time.Time // per client address: the answers counted by limit
	totpUsed  map[string]int64       // code → the 30 s window it was accepted in
	keys      map[string]bool        // accepted besides APIKey (NewKey)
}

// outcome is a scripted failure of /auth/token.
type outcome struct {
	status     int
	retryAfter time.Duration
}

// Request is what the server recorded of a request it received. It holds
// no secret: only whether the key was right.
type Request struct {
	Method string
	Path   string      // below the base URL, e.g. "/auth/token"
	Header http.Header // as received (the Authorization header is redacted)
	Fields []string    // the JSON body's field names, sorted
	KeyOK  bool        // /auth/token: the api_key field was the server's key
	Status int         // the status the server answered
	Time   time.Time   // on the server's clock

	limited bool // answered 429 by WithRateLimit
}

// Option configures a Server.
type Option func(*Server)

// WithClock makes the server read time (token issue and expiry, latency)
// from c; share a *clock.Mock with the client for deterministic tests.
func WithClock(c clock.Clock) Option { return func(s *Server) { s.clock = c } }

// WithLifetime sets the life of issued tokens (default DefaultLifetime).
func WithLifetime(d time.Duration) Option { return func(s *Server) { s.lifetime = d } }

// WithAPIKey sets the key the server accepts instead of a random one.
func WithAPIKey(key string) Option { return func(s *Server) { s.APIKey = key } }

// WithRateLimit limits /auth/token as the Colony does: n answers per client
// address (the request's RemoteAddr host; every in-memory request is one
// address) and rolling hour. Every answer the server gives itself counts,
// 429s included, so each attempt after a 429 extends the penalty; the
// scripted failures of FailNext and Down stand for a proxy in front of a
// server that is down and are not counted. Past the limit it answers 429
// with a Retry-After (whole seconds) of the wait until a slot frees.
func WithRateLimit(n int) Option { return func(s *Server) { s.limit = n } }

// NewServer starts a fake Colony on a loopback port. Close it when done.
func NewServer(opts ...Option) *Server {
	s := NewUnstarted(opts...)
	s.http = httptest.NewServer(s)
	s.URL = s.http.URL + "/api/v1"
	return s
}

// NewUnstarted returns a fake Colony that listens nowhere: reach it with
// Client or Transport, which serve requests in memory. Its URL is
// https://colony.test/api/v1: a name only its own Transport serves (".test"
// is reserved and never resolves), with https so that colonyauth accepts it.
// It suits testing/synctest bubbles, where real sockets are not allowed to
// block.
func NewUnstarted(opts ...Option) *Server {
	s := &Server{
		URL:      "https://colony.test/api/v1",
		APIKey:   "col_" + randomText(32),
		clock:    clock.New(),
		secret:   []byte(randomText(32)),
		lifetime: DefaultLifetime,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Close stops a server started by NewServer; it is a no-op otherwise.
func (s *Server) Close() {
	if s.http != nil {
		s.http.Close()
	}
}

// Client returns an HTTP client that reaches this server in memory,
// whatever host a request names.
func (s *Server) Client() *http.Client { return &http.Client{Transport: s.Transport()} }

// Transport returns an http.RoundTripper that serves every request with
// this server's handler, in memory.
func (s *Server) Transport() http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		if err := r.Context().Err(); err != nil {
			return nil, err
		}
		if r.Body == nil {
			r = r.Clone(r.Context())
			r.Body = http.NoBody // as a server would see it
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		resp := rec.Result()
		resp.Request = r
		return resp, nil
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// NewKey returns a new key that the server accepts too, for tests with
// many agents, each with its own key.
func (s *Server) NewKey() string {
	key := "col_" + randomText(32)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = map[string]bool{}
	}
	s.keys[key] = true
	return key
}

// FailNext makes the next n exchanges answer status, with a Retry-After
// header of retryAfter if it is not 0.
func (s *Server) FailNext(n, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.fail = append(s.fail, outcome{status, retryAfter})
	}
}

// Down makes every exchange answer status (e.g. 502) until Up.
func (s *Server) Down(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = &outcome{status: status}
}

// Up ends Down.
func (s *Server) Up() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = nil
}

// RevokeAll makes every token issued so far fail on the API with 401.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked = s.issued + 1
}

// SetLatency makes every /auth/token request wait d on the server's clock
// before it is answered (the API itself stays fast).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// RequireTOTP turns on two-factor authentication: exchanges must carry
// totp_code equal to code ("" turns it off). As on the Colony, each code is
// accepted once per 30 s window (of the server's clock): a second exchange
// with it in the same window gets 401 AUTH_2FA_INVALID.
func (s *Server) RequireTOTP(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.totp = code
}

// Requests returns the requests received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Exchanges returns how many POST /auth/token requests the server received.
func (s *Server) Exchanges() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchanges
}

// ServeHTTP serves the fake API under /api/v1, the base URL's path. As the
// Colony does, it answers 404 to any other path (/auth/token without the
// base path included), so tests catch a wrong base URL. Requests records
// paths without the base path: "/auth/token".
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, underBase := strings.CutPrefix(r.URL.Path, "/api/v1")
	if !underBase {
		path = "(outside /api/v1) " + r.URL.Path
	}
	s.mu.Lock()
	latency := s.latency
	s.mu.Unlock()
	if latency > 0 && path == "/auth/token" {
		s.clock.Sleep(latency)
	}
	rec := Request{Method: r.Method, Path: path, Header: r.Header.Clone(), Time: s.clock.Now()}
	if rec.Header.Get("Authorization") != "" {
		rec.Header.Set("Authorization", "[REDACTED]")
	}
	sw := &statusWriter{ResponseWriter: w}
	switch {
	case path == "/auth/token" && r.Method == http.MethodPost:
		s.token(sw, r, &rec)
	case path == "/auth/token":
		writeDetail(sw, http.StatusMethodNotAllowed, "", "Method Not Allowed")
	case path == "/users/me" && r.Method == http.MethodGet:
		s.me(sw, r)
	default:
		writeDetail(sw, http.StatusNotFound, "", "Not Found")
	}
	rec.Status = sw.status
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request, rec *Request) {
	var body map[string]any
	err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body)
	for k := range body {
		rec.Fields = append(rec.Fields, k)
	}
	slices.Sort(rec.Fields)
	key, _ := body["api_key"].(string)
	code, _ := body["totp_code"].(string)
	s.mu.Lock()
	rec.KeyOK = key != "" && (hmac.Equal([]byte(key), []byte(s.APIKey)) || s.keys[key])
	s.mu.Unlock()

	s.mu.Lock()
	s.exchanges++
	var out *outcome
	switch {
	case s.down != nil:
		out = s.down
	case len(s.fail) > 0:
		out = &s.fail[0]
		s.fail = s.fail[1:]
	}
	totp := s.totp
	var wait time.Duration
	if out == nil {
		wait = s.count(clientAddr(r))
		rec.limited = wait > 0
	}
	s.mu.Unlock()

	switch {
	case out != nil:
		if out.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(out.retryAfter/time.Second)))
		}
		if out.status == http.StatusTooManyRequests {
			writeDetail(w, out.status, "RATE_LIMITED", "Too many authentication attempts")
			return
		}
		writeDetail(w, out.status, "", http.StatusText(out.status))
	case wait > 0:
		w.Header().Set("Retry-After", strconv.FormatInt(int64((wait+time.Second-1)/time.Second), 10))
		writeDetail(w, http.StatusTooManyRequests, "RATE_LIMITED", "Too many authentication attempts from this address")
	case err != nil:
		writeDetail(w, http.StatusUnprocessableEntity, "", "body must be a JSON object")
	case !rec.KeyOK:
		writeDetail(w, http.StatusUnauthorized, "AUTH_INVALID_KEY", "Invalid API key")
	case totp != "" && code == "":
		writeDetail(w, http.StatusUnauthorized, "AUTH_2FA_REQUIRED", "Two-factor code required")
	case totp != "" && (!hmac.Equal([]byte(code), []byte(totp)) || !s.useTOTP(code)):
		writeDetail(w, http.StatusUnauthorized, "AUTH_2FA_INVALID", "Invalid two-factor code")
	default:
		s.mu.Lock()
		s.issued++
		gen := s.issued
		life := s.lifetime
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{
			"access_token": s.sign(gen, s.clock.Now(), life),
			"token_type":   "bearer",
			"expires_in":   int64(life / time.Second),
		})
	}
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		writeDetail(w, http.StatusUnauthorized, "AUTH_REQUIRED", "Not authenticated")
		return
	}
	c, err := s.verify(tok)
	if err != "" {
		writeDetail(w, http.StatusUnauthorized, "AUTH_INVALID_TOKEN", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": c.Sub, "username": "test-agent"})
}

func writeDetail(w http.ResponseWriter, status int, code, msg string) {
	if code == "" {
		writeJSON(w, status, map[string]any{"detail": msg})
		return
	}
	writeJSON(w, status, map[string]any{"detail": map[string]string{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func randomText(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return strings.TrimRight(base64.RawURLEncoding.EncodeToString(b), "=")[:n]
}

// String describes the server without its key.
func (s *Server) String() string { return fmt.Sprintf("colonyauthtest.Server(%s)", s.URL) }
