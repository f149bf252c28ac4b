package broker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thecolonycc/colonyauth"
	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// newBroker is a broker in front of srv (served in memory), with its own
// cache directory, logging into logs.
func newBroker(t *testing.T, srv *colonyauthtest.Server, logs *bytes.Buffer, c Config) *Broker {
	t.Helper()
	c.Upstream, c.Transport = srv.URL, srv.Transport()
	if c.CacheDir == "" {
		c.CacheDir = t.TempDir()
	}
	if logs != nil {
		c.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: logs}, nil))
	}
	b, err := New(c)
	require.NoError(t, err)
	return b
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// post sends body to b's /auth/token and decodes the answer.
func post(b *Broker, body string) (*httptest.ResponseRecorder, map[string]any) {
	r := httptest.NewRequest(http.MethodPost, "http://broker"+b.Path()+"/auth/token", strings.NewReader(body))
	w := httptest.NewRecorder()
	b.ServeHTTP(w, r)
	var out map[string]any
	json.Unmarshal(w.Body.Bytes(), &out)
	return w, out
}

func keyBody(key string) string { return `{"api_key":"` + key + `"}` }

// detailCode is the Colony's error code of an answer.
func detailCode(out map[string]any) string {
	d, _ := out["detail"].(map[string]any)
	c, _ := d["code"].(string)
	return c
}

// B36: the first request exchanges, the next is answered from the cache;
// the answer is the Colony's shape plus expires_in, the seconds to the
// real expiry. One line is logged per request, with the key's fingerprint
// and never the key or token.
func TestTokenExchangeThenCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		var logs bytes.Buffer
		b := newBroker(t, srv, &logs, Config{})
		w, out := post(b, keyBody(srv.APIKey))
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		assert.Equal(t, "bearer", out["token_type"])
		assert.EqualValues(t, 24*3600, out["expires_in"])
		first := out["access_token"]
		require.NotEmpty(t, first)

		time.Sleep(time.Hour)
		w, out = post(b, keyBody(srv.APIKey))
		require.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, first, out["access_token"])
		assert.EqualValues(t, 23*3600, out["expires_in"], "the real expiry, not the refresh point")
		assert.Equal(t, 1, srv.Exchanges())

		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		require.Len(t, lines, 2)
		assert.Contains(t, lines[0], "status=200 answer=exchange")
		assert.Contains(t, lines[1], "status=200 answer=cache")
		assert.Contains(t, lines[0], "key="+fingerprint(srv.APIKey))
		assert.NotContains(t, logs.String(), srv.APIKey)
		assert.NotContains(t, logs.String(), first)
	})
}

// B39: bad input gets the Colony's answer, and nothing is sent upstream.
func TestBadInput(t *testing.T) {
	srv := colonyauthtest.NewUnstarted()
	b := newBroker(t, srv, nil, Config{})
	for _, c := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"body over 64 KiB", "POST", "/auth/token", `{"api_key":"` + strings.Repeat("a", MaxBody) + `"}`, http.StatusRequestEntityTooLarge},
		{"invalid JSON", "POST", "/auth/token", `{"api_key":`, http.StatusUnprocessableEntity},
		{"not an object", "POST", "/auth/token", `["col_x"]`, http.StatusUnprocessableEntity},
		{"missing api_key", "POST", "/auth/token", `{}`, http.StatusUnprocessableEntity},
		{"empty api_key", "POST", "/auth/token", `{"api_key":""}`, http.StatusUnprocessableEntity},
		{"api_key not a string", "POST", "/auth/token", `{"api_key":42}`, http.StatusUnprocessableEntity},
		{"totp_code not a string", "POST", "/auth/token", `{"api_key":"col_abc","totp_code":123456}`, http.StatusUnprocessableEntity},
		{"a key with a space (B15)", "POST", "/auth/token", `{"api_key":"col_a b"}`, http.StatusUnauthorized},
		{"a JWT as the key (B15)", "POST", "/auth/token", `{"api_key":"eyJhbGciOiJIUzI1NiJ9.e30.x"}`, http.StatusUnauthorized},
		{"GET on /auth/token", "GET", "/auth/token", ``, http.StatusMethodNotAllowed},
		{"outside the path", "GET", "/users/me", ``, http.StatusNotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := b.Path() + c.path
			if c.name == "outside the path" {
				path = c.path
			}
			w := httptest.NewRecorder()
			b.ServeHTTP(w, httptest.NewRequest(c.method, "http://broker"+path, strings.NewReader(c.body)))
			assert.Equal(t, c.status, w.Code, w.Body.String())
			var out map[string]any
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &out), "the Colony's shape")
			assert.NotEmpty(t, detailCode(out))
		})
	}
	assert.Zero(t, len(srv.Requests()), "nothing sent upstream")
}

// B36: the host's hour spent is 429 with Retry-After and RATE_LIMITED, and
// nothing goes upstream; the limiter behind never answers 429.
func TestBudgetSpent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted(colonyauthtest.WithRateLimit(30))
		b := newBroker(t, srv, nil, Config{})
		ok := 0
		for range 30 {
			if w, _ := post(b, keyBody(srv.NewKey())); w.Code == http.StatusOK {
				ok++
			}
		}
		assert.Equal(t, 30, ok)
		w, out := post(b, keyBody(srv.NewKey()))
		require.Equal(t, http.StatusTooManyRequests, w.Code)
		assert.Equal(t, "RATE_LIMITED", detailCode(out))
		retry, _ := strconv.Atoi(w.Header().Get("Retry-After"))
		assert.InDelta(t, 3600, retry, 1, "until the first slot frees")
		assert.EqualValues(t, retry, out["detail"].(map[string]any)["retry_after"])
		assert.Equal(t, 30, srv.Exchanges())
		assert.Zero(t, srv.RateLimited())
	})
}

// B36: during an outage a request waits up to Wait for a token, then gets
// 503 with Retry-After the host's next attempt; once the endpoint is back a
// request gets its token.
func TestOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		srv.Down(http.StatusBadGateway)
		var logs bytes.Buffer
		b := newBroker(t, srv, &logs, Config{Wait: 25 * time.Second})
		start := time.Now()
		w, out := post(b, keyBody(srv.APIKey))
		assert.Equal(t, 25*time.Second, time.Since(start), "waited --wait")
		require.Equal(t, http.StatusServiceUnavailable, w.Code)
		assert.Equal(t, "AUTH_UNAVAILABLE", detailCode(out))
		assert.Equal(t, "5", w.Header().Get("Retry-After"), "attempts at 0, 2, 6, 14, 30 s: the next in 5 s")
		assert.Contains(t, logs.String(), "status=503 answer=outage")
		srv.Up()
		time.Sleep(5 * time.Second)
		w, _ = post(b, keyBody(srv.APIKey))
		assert.Equal(t, http.StatusOK, w.Code, w.Body.String())
	})
}

// B37: a request with totp_code is exchanged with that code and its token
// goes to that caller only: the key alone gets AUTH_2FA_REQUIRED, as it
// would without the broker, and so does a token a Go program minted with
// WithTOTP in the same directory.
func TestTwoFactor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		srv.RequireTOTP("123456")
		dir := t.TempDir()
		b := newBroker(t, srv, nil, Config{CacheDir: dir})
		w, out := post(b, `{"api_key":"`+srv.APIKey+`","totp_code":"123456"}`)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		require.NotEmpty(t, out["access_token"])

		w, out = post(b, keyBody(srv.APIKey))
		assert.Equal(t, http.StatusUnauthorized, w.Code)
		assert.Equal(t, "AUTH_2FA_REQUIRED", detailCode(out))

		time.Sleep(time.Minute)
		goSrc := colonyauth.New(srv.APIKey, colonyauth.WithBaseURL(srv.URL), colonyauth.WithHTTPClient(srv.Client()),
			colonyauth.WithFileCache(dir), colonyauth.WithTOTP(func() (string, error) { return "123456", nil }))
		_, err := goSrc.Token()
		require.NoError(t, err)
		time.Sleep(time.Minute)
		w, out = post(b, keyBody(srv.APIKey))
		assert.Equal(t, http.StatusUnauthorized, w.Code, "a token minted with a code is not served to the key alone")
		assert.Equal(t, "AUTH_2FA_REQUIRED", detailCode(out))
	})
}

// B38: every other request under the path is proxied unchanged, with no
// X-Forwarded-For; B41: status and health.
func TestProxyAndStatus(t *testing.T) {
	srv := colonyauthtest.NewUnstarted()
	var logs bytes.Buffer
	b := newBroker(t, srv, &logs, Config{Verbose: true})
	_, out := post(b, keyBody(srv.APIKey))
	tok := out["access_token"].(string)

	r := httptest.NewRequest(http.MethodGet, "http://broker"+b.Path()+"/users/me?x=1", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	b.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code, w.Body.String())
	assert.Contains(t, w.Body.String(), "agent-1")
	reqs := srv.Requests()
	last := reqs[len(reqs)-1]
	assert.Equal(t, "/users/me", last.Path)
	assert.Empty(t, last.Header.Get("X-Forwarded-For"))
	assert.Contains(t, logs.String(), "method=GET path=/api/v1/users/me status=200")
	assert.NotContains(t, logs.String(), tok)

	w = httptest.NewRecorder()
	b.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://broker/-/status", nil))
	require.Equal(t, http.StatusOK, w.Code)
	var st colonyauth.HostStatus
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &st))
	assert.Equal(t, 1, st.Answers)
	assert.True(t, st.Coordinating, st.Problem)
	assert.NotContains(t, w.Body.String(), srv.APIKey)

	w = httptest.NewRecorder()
	b.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://broker/-/healthz", nil))
	assert.Equal(t, http.StatusOK, w.Code)
}

// B36: sources idle for an hour are dropped; at most MaxSources are kept.
func TestSourcesDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		b := newBroker(t, srv, nil, Config{})
		for range 3 {
			post(b, keyBody(srv.NewKey()))
		}
		assert.Equal(t, 3, b.sources.len())
		time.Sleep(IdleTime)
		post(b, keyBody(srv.NewKey()))
		assert.Equal(t, 1, b.sources.len(), "the idle ones are gone")

		s := newSources(b.clock)
		for i := range MaxSources + 5 {
			s.get(fmt.Sprintf("col_key%d", i), b.newSource)
		}
		assert.Equal(t, MaxSources, s.len())
	})
}

// B39: 1,000 concurrent requests (20 keys) over loopback are all served,
// with one exchange per key; a client that hangs up costs nothing.
func TestThousandConcurrent(t *testing.T) {
	srv := colonyauthtest.NewUnstarted()
	b := newBroker(t, srv, nil, Config{})
	hs := httptest.NewServer(b)
	defer hs.Close()
	keys := make([]string, 20)
	for i := range keys {
		keys[i] = srv.NewKey()
	}
	var wg sync.WaitGroup
	codes := make([]int, 1000)
	for i := range codes {
		wg.Go(func() {
			resp, err := hs.Client().Post(hs.URL+b.Path()+"/auth/token", "application/json", strings.NewReader(keyBody(keys[i%len(keys)])))
			if err != nil {
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, c := range codes {
		require.Equal(t, http.StatusOK, c, "request %d", i)
	}
	assert.Equal(t, len(keys), srv.Exchanges())
}

// B41: when coordination is lost (here, a directory others can write to),
// /-/status says so, with what to do.
func TestStatusSaysCoordinationLost(t *testing.T) {
	srv := colonyauthtest.NewUnstarted()
	dir := t.TempDir()
	b := newBroker(t, srv, nil, Config{CacheDir: dir})
	require.NoError(t, os.Chmod(dir, 0o777))
	w, _ := post(b, keyBody(srv.APIKey))
	assert.Equal(t, http.StatusOK, w.Code, "acting alone still serves")
	st := b.Status()
	assert.False(t, st.Coordinating)
	assert.Contains(t, st.Problem, "chmod 700")
}

func decode(resp *http.Response, v any) {
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(v)
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// New refuses an upstream the library would refuse (plain http off
// loopback), or no URL at all, before serving anything.
func TestNewRefusesBadUpstream(t *testing.T) {
	for _, u := range []string{"http://thecolony.ai/api/v1", "thecolony.ai/api/v1", "ftp://x/api/v1"} {
		_, err := New(Config{Upstream: u, CacheDir: t.TempDir()})
		assert.Error(t, err, u)
	}
	b, err := New(Config{CacheDir: t.TempDir()})
	require.NoError(t, err)
	assert.Equal(t, "/api/v1", b.Path(), "the Colony's path by default")
}
