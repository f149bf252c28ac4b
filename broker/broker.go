// Package broker is the host broker behind "colonytoken serve": an
// http.Handler that answers the Colony's POST /auth/token from one
// colonyauth.TokenSource per key, all sharing the host's cache directory,
// and proxies every other request to the Colony unchanged.
//
// Most agents on a host are not Go programs: the Python, JS and Go SDKs
// each exchange their own key, with no host budget and no shared prober.
// Pointed at the broker (their base URL set to its URL), they share what Go
// sources sharing the directory share: the host's 30 answers an hour, one
// prober during an outage, one exchange per key (DESIGN.md B35–B41). The
// handler can be embedded in any server; colonytoken serve adds listening,
// TLS and signals.
package broker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/thecolonycc/colonyauth"
)

// Defaults of Config.
const (
	DefaultWait = 25 * time.Second // under the SDKs' 30-second request timeout
	MaxSources  = 10000            // TokenSources kept at most, one per key
	IdleTime    = time.Hour        // a key's source unused this long is dropped
	MaxBody     = 64 << 10         // the largest /auth/token body accepted
)

// Config is what a Broker needs. The zero value serves the Colony from the
// user's cache directory.
type Config struct {
	// Upstream is the Colony's base URL (colonyauth.DefaultBaseURL if
	// empty). The broker serves the same path: clients use
	// http://ADDR + its path, e.g. http://127.0.0.1:8787/api/v1.
	Upstream string

	// CacheDir is the host's cache directory, shared with Go programs using
	// colonyauth.WithFileCache, other brokers and colonytoken ("" is
	// os.UserCacheDir()/colonyauth).
	CacheDir string

	// Wait bounds how long a request waits for a token while /auth/token
	// is failing, before it gets 503 with Retry-After (DefaultWait if 0).
	Wait time.Duration

	// Transport carries requests upstream (http.DefaultTransport if nil;
	// TLS is verified).
	Transport http.RoundTripper

	// Logger gets one line per /auth/token request (status, how it was
	// answered, duration, the key's fingerprint), and with Verbose one per
	// proxied request. Never a key, token, code or header value. Silent
	// if nil.
	Logger  *slog.Logger
	Verbose bool

	// Clock is the sources' clock (clock.New() if nil), for tests.
	Clock clock.Clock
}

// Broker is the handler. Make one with New; it is safe for concurrent use.
type Broker struct {
	upstream *url.URL
	base     string // the upstream base URL, without a trailing slash
	path     string // the upstream's path, which the broker serves
	cache    colonyauth.Cache
	wait     time.Duration
	client   *http.Client
	proxy    *httputil.ReverseProxy
	log      *slog.Logger
	verbose  bool
	clock    clock.Clock
	sources  *sources
}

// New returns a Broker for c, or an error when the upstream URL or the
// cache directory cannot be used.
func New(c Config) (*Broker, error) {
	base := strings.TrimRight(cmp.Or(c.Upstream, colonyauth.DefaultBaseURL), "/")
	up, err := url.Parse(base)
	if err != nil || up.Host == "" || (up.Scheme != "https" && up.Scheme != "http") {
		return nil, fmt.Errorf("broker: invalid upstream base URL %q: want https://host/path", base)
	}
	// The library's own checks of a base URL (https, or http to loopback only),
	// run with a placeholder key: no source is made until a request comes.
	if err := colonyauth.New("col_placeholder", colonyauth.WithBaseURL(base)).Check(); err != nil {
		return nil, fmt.Errorf("broker: upstream: %w", err)
	}
	cache, err := colonyauth.NewFileCache(c.CacheDir)
	if err != nil {
		return nil, fmt.Errorf("broker: no cache directory: %w", err)
	}
	b := &Broker{
		upstream: up, base: base, path: up.Path, cache: cache,
		wait:    cmp.Or(c.Wait, DefaultWait),
		client:  &http.Client{Transport: cmp.Or[http.RoundTripper](c.Transport, http.DefaultTransport), Timeout: 30 * time.Second},
		log:     cmp.Or(c.Logger, slog.New(slog.DiscardHandler)),
		verbose: c.Verbose,
		clock:   cmp.Or[clock.Clock](c.Clock, clock.New()),
	}
	b.sources = newSources(b.clock)
	b.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// The path is the upstream's already; no X-Forwarded-For.
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = up.Scheme, up.Host, ""
		},
		Transport:     b.client.Transport,
		FlushInterval: -1, // streaming answers flushed as they come
		BufferPool:    bufferPool{},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() == nil {
				writeDetail(w, http.StatusBadGateway, "UPSTREAM_UNREACHABLE", "the broker could not reach the Colony")
			}
		},
	}
	return b, nil
}

// Path is the path the broker serves, the upstream's: clients append it to
// the broker's address ("/api/v1" for the Colony).
func (b *Broker) Path() string { return b.path }

// ServeHTTP answers {path}/auth/token itself, proxies the rest of {path},
// serves GET /-/status and /-/healthz, and answers 404 to anything else.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/-/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	case p == "/-/status":
		writeJSON(w, http.StatusOK, b.Status())
	case p == b.path+"/auth/token":
		b.token(w, r)
	case strings.HasPrefix(p, b.path+"/"):
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		b.proxy.ServeHTTP(sw, r)
		if b.verbose {
			b.log.Info("colonytoken serve: proxied", "method", r.Method, "path", r.URL.Path, "status", sw.status)
		}
	default:
		writeDetail(w, http.StatusNotFound, "NOT_FOUND", "Not Found: the broker serves "+b.path)
	}
}

// Status is the host record of the upstream, as GET /-/status serves it.
// When one of the broker's sources acts alone (its Ledger failed: a lock
// held too long, a directory refused), Coordinating is false and Problem
// is the reason it recorded.
func (b *Broker) Status() colonyauth.HostStatus {
	st := colonyauth.ReadHostStatus(b.cache, b.base, colonyauth.DefaultHostLimit, b.clock.Now())
	if err := b.sources.alone(); err != nil && st.Coordinating {
		st.Coordinating, st.Problem = false, "a source acts alone: "+err.Error()
	}
	return st
}

// token answers POST {path}/auth/token.
func (b *Broker) token(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	how, status, fp := "bad input", 0, ""
	defer func() {
		b.log.Info("colonytoken serve: /auth/token", "status", status, "answer", how,
			"duration", time.Since(start).Round(time.Millisecond), "key", fp)
	}()
	fail := func(code int, colonyCode, msg string) {
		status = code
		writeDetail(w, code, colonyCode, msg)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fail(http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "Method Not Allowed: POST the api_key")
		return
	}
	req, err := readRequest(w, r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", fmt.Sprintf("the body is over %d bytes", MaxBody))
			return
		}
		fail(http.StatusUnprocessableEntity, "VALIDATION_ERROR", err.Error())
		return
	}
	fp = fingerprint(req.APIKey)
	var src *colonyauth.TokenSource
	var exchanges func() int64
	if req.TOTPCode != "" {
		// Exchanged with that code, through the host's budget and prober;
		// the token goes to this caller only (B37).
		src, exchanges = b.twoFactorSource(req.APIKey, req.TOTPCode)
	} else {
		src, exchanges = b.sources.get(req.APIKey, b.newSource)
	}
	if err := src.Check(); err != nil {
		how = "bad key"
		fail(http.StatusUnauthorized, "AUTH_INVALID_KEY", "invalid api key: "+lastPart(err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), b.wait)
	defer cancel()
	before := exchanges()
	tok, err := src.TokenContext(ctx)
	if r.Context().Err() != nil {
		how, status = "client gone", 499
		return
	}
	if err == nil {
		how = "cache"
		if exchanges() != before {
			how = "exchange"
		}
		exp, _ := tok.Extra("expires_at").(time.Time)
		status = http.StatusOK
		writeJSON(w, http.StatusOK, map[string]any{
			"access_token": tok.AccessToken,
			"token_type":   "bearer",
			"expires_in":   max(0, int64(exp.Sub(b.clock.Now())/time.Second)),
		})
		return
	}
	how, status = b.writeError(w, err)
}

// writeError answers a failed TokenContext in the Colony's shape, and says
// how it was answered.
func (b *Broker) writeError(w http.ResponseWriter, err error) (how string, status int) {
	var e *colonyauth.Error
	errors.As(err, &e)
	switch {
	case errors.Is(err, colonyauth.ErrRateLimited):
		how = "hold"
		if e.StatusCode == 0 {
			how = "budget"
		}
		secs := retrySeconds(e.RetryAfter)
		w.Header().Set("Retry-After", fmt.Sprint(secs))
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"detail": map[string]any{
			"code": "RATE_LIMITED", "message": e.Error(), "retry_after": secs}})
		return how, http.StatusTooManyRequests
	case errors.Is(err, colonyauth.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		next := time.Duration(0)
		if e != nil {
			next = e.RetryAfter
		}
		if st := b.Status(); !st.NextProbe.IsZero() {
			next = max(next, st.NextProbe.Sub(b.clock.Now()))
		}
		secs := retrySeconds(next)
		w.Header().Set("Retry-After", fmt.Sprint(secs))
		writeDetail(w, http.StatusServiceUnavailable, "AUTH_UNAVAILABLE",
			"/auth/token is failing; the host's prober tries again in "+fmt.Sprint(secs)+"s")
		return "outage", http.StatusServiceUnavailable
	case e != nil && (e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden):
		writeDetail(w, e.StatusCode, cmp.Or(e.Code, "AUTH_INVALID_KEY"), cmp.Or(e.Message, http.StatusText(e.StatusCode)))
		return "rejected", e.StatusCode
	case errors.Is(err, colonyauth.ErrTwoFactorInvalid):
		writeDetail(w, http.StatusUnauthorized, "AUTH_2FA_INVALID", e.Error())
		return "rejected", http.StatusUnauthorized
	}
	writeDetail(w, http.StatusBadGateway, "UPSTREAM_ERROR", err.Error())
	return "error", http.StatusBadGateway
}

// request is the body of POST /auth/token.
type request struct {
	APIKey   string
	TOTPCode string
}

func readRequest(w http.ResponseWriter, r *http.Request) (request, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	if err := dec.Decode(&raw); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return request{}, err
		}
		return request{}, errors.New("the body is not a JSON object")
	}
	var req request
	if json.Unmarshal(raw["api_key"], &req.APIKey) != nil || req.APIKey == "" {
		return request{}, errors.New("api_key: a non-empty string is required")
	}
	if code, ok := raw["totp_code"]; ok && string(code) != "null" {
		if json.Unmarshal(code, &req.TOTPCode) != nil {
			return request{}, errors.New("totp_code: a string is required")
		}
	}
	return req, nil
}

// retrySeconds is a Retry-After value: whole seconds, at least 1.
func retrySeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

// lastPart is the message of err without its "colonyauth: …:" prefix.
func lastPart(err error) string {
	var e *colonyauth.Error
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return err.Error()
}

func writeDetail(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"detail": map[string]string{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// bufferPool reuses the proxy's copy buffers (32 KiB each) across requests.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func (bufferPool) Get() []byte { return buffers.Get().(*[32 << 10]byte)[:] }
func (bufferPool) Put(b []byte) {
	if len(b) == 32<<10 {
		buffers.Put((*[32 << 10]byte)(b))
	}
}

// statusWriter remembers the status of a proxied answer, for the log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController flush the streamed answers.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
