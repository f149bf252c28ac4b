package colonyauth

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// Tests of B24–B30 and §1: what an adversarial review found.

// B26: plain http only to a loopback IP literal or exactly "localhost".
func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	for _, base := range []string{"http://x.localhost/api/v1", "http://colony.localhost/api/v1", "http://evillocalhost/api/v1",
		"http://localhost.evil.example/api/v1", "http://10.1.2.3/api/v1", "http://127.0.0.1.nip.io/api/v1"} {
		var sent atomic.Int32
		hc := handlerClient(func(w http.ResponseWriter, r *http.Request) { sent.Add(1); answer(w, 200, `{"access_token":"t"}`) })
		_, err := New(testKey, WithBaseURL(base), WithHTTPClient(hc)).Token()
		require.Error(t, err, base)
		assert.Contains(t, err.Error(), "plain http", base)
		assert.Zero(t, sent.Load(), "%s: nothing sent", base)
	}
	for _, base := range []string{"http://localhost:8080/api/v1", "http://127.0.0.1/api/v1", "http://127.9.9.9/api/v1", "http://[::1]:9/api/v1", "https://x.localhost/api/v1"} {
		assert.NoError(t, New(testKey, WithBaseURL(base)).err, base)
	}
}

// B30: Delay and Budget stay within [0, MaxDelay] and
// [0, MaxRetries·MaxDelay] for any valid config, huge ones included.
func TestRetryArithmeticNeverOverflows(t *testing.T) {
	huge := time.Duration(math.MaxInt64)
	configs := []RetryConfig{
		{MaxRetries: math.MaxInt, BaseDelay: time.Nanosecond, MaxDelay: huge},
		{MaxRetries: 1000, BaseDelay: 2 * time.Second, MaxDelay: huge},
		{MaxRetries: 100, BaseDelay: huge / 3, MaxDelay: huge},
		{MaxRetries: math.MaxInt, BaseDelay: time.Hour, MaxDelay: 24 * time.Hour},
		{MaxRetries: 6},
	}
	for _, r := range configs {
		require.NoError(t, r.validate())
		max := r.maxDelay()
		for _, n := range []int{0, 1, 30, 62, 63, 64, 100, 1 << 20, math.MaxInt} {
			d := r.Delay(n)
			assert.True(t, d >= 0 && d <= max, "%+v Delay(%d) = %v", r, n, d)
		}
		b := r.Budget()
		assert.GreaterOrEqual(t, b, time.Duration(0), "%+v", r)
		if limit := float64(r.MaxRetries) * float64(max); limit < math.MaxInt64 {
			assert.LessOrEqual(t, float64(b), limit, "%+v", r)
		}
	}
	assert.Equal(t, huge, configs[0].Budget(), "saturates")
	assert.Equal(t, 122*time.Second, DefaultRetry().Budget())
	assert.Equal(t, huge, configs[1].Delay(40), "doubling stops at MaxDelay")
	assert.Equal(t, 24*time.Hour, configs[3].Delay(math.MaxInt))
}

// §1, B5: the status decides the class; a 2FA code on a 429 keeps the
// 429's Retry-After and is not re-sent inside it.
func TestTwoFactorCodeOnRateLimit(t *testing.T) {
	bubble(t, func(t *testing.T) {
		var sent atomic.Int32
		hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
			sent.Add(1)
			w.Header().Set("Retry-After", "300")
			answer(w, 429, `{"detail":{"code":"AUTH_2FA_INVALID","message":"slow down"}}`)
		})
		s := New(testKey, WithHTTPClient(hc))
		_, err := s.Token()
		require.ErrorIs(t, err, ErrRateLimited)
		assert.False(t, errors.Is(err, ErrTwoFactorInvalid))
		assert.Equal(t, 300*time.Second, asError(t, err).RetryAfter)
		for range 29 {
			time.Sleep(10 * time.Second)
			_, err = s.Token()
			require.ErrorIs(t, err, ErrRateLimited)
		}
		assert.EqualValues(t, 1, sent.Load(), "nothing re-sent inside the 300 s Retry-After")
		time.Sleep(10 * time.Second)
		s.Token()
		assert.EqualValues(t, 2, sent.Load())
	})
}

// B28: every form of an echoed key or token is redacted, in the error,
// the RetrieveError's body and headers, and the log.
func TestRedactionEverywhere(t *testing.T) {
	key := "col_A/b+c<d>e&f\"g\u00e9h" + strings.Repeat("Z", 30)
	opaque := "opaque-token-0123456789"
	forms := []string{
		key,
		jsonEscape(key),
		asciiJSON(jsonEscape(key), false),
		strings.ReplaceAll(jsonEscape(key), "/", `\/`),
		url.QueryEscape(key),
		url.PathEscape(key),
		key[:12],                  // an echo of the first 12 characters
		url.QueryEscape(key[:12]), // URL-encoded
	}
	for i, form := range forms {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			var logs logBuffer
			hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Echo", "key="+form)
				w.Header().Set("Location", "https://elsewhere.example/?k="+form)
				answer(w, 401, `{"detail":"bad key `+form+`"}`)
			})
			_, err := New(key, WithHTTPClient(hc), WithLogger(logs.logger())).Token()
			require.Error(t, err)
			var re *oauth2.RetrieveError
			require.ErrorAs(t, err, &re)
			shown := []string{err.Error(), fmt.Sprintf("%v %+v %#v", err, err, err), string(re.Body), fmt.Sprint(re.Response.Header), logs.String()}
			for _, text := range shown {
				assert.NotContains(t, text, form)
				assert.NotContains(t, text, key[:8])
			}
			assert.Contains(t, string(re.Body), redacted)
			assert.Contains(t, re.Response.Header.Get("X-Echo"), redacted)
		})
	}

	// An opaque token in a refused 2xx stays out of RetrieveError.Body.
	hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, `{"access_token":"`+opaque+`","token_type":"mac"}`)
	})
	_, err := New(testKey, WithHTTPClient(hc)).Token()
	require.ErrorIs(t, err, ErrMalformedResponse)
	var re *oauth2.RetrieveError
	require.ErrorAs(t, err, &re)
	assert.NotContains(t, string(re.Body), opaque)
	assert.NotContains(t, err.Error(), opaque)
}

// B28: transport errors, WithTOTP errors and the redirect Location are
// redacted with the key, whatever its shape; server messages are capped
// at 200 bytes.
func TestRedactionOfErrorsAndLocation(t *testing.T) {
	key := "k3y-not-col-shaped-" + strings.Repeat("q", 20)
	bubble(t, func(t *testing.T) {
		var logs logBuffer
		fail := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
			return nil, fmt.Errorf("dial tcp: connection reset while sending %s: %w", key, errReset)
		})}
		s := New(key, WithHTTPClient(fail), WithLogger(logs.logger()), WithRetry(RetryConfig{MaxRetries: 1}))
		_, err := s.Token()
		require.Error(t, err)
		assert.ErrorIs(t, err, errReset, "the chain is kept")
		assert.NotContains(t, err.Error(), key[:8])
		assert.Contains(t, err.Error(), "connection reset", "the cause is still told")
		assert.Contains(t, logs.String(), "connection reset")
		assert.NotContains(t, logs.String(), key[:8])
	})

	_, err := New(key, WithHTTPClient(handlerClient(func(w http.ResponseWriter, r *http.Request) {})),
		WithTOTP(func() (string, error) { return "", errors.New("no secret for " + key) })).Token()
	require.Error(t, err)
	assert.NotContains(t, err.Error(), key[:8])
	assert.Contains(t, err.Error(), "no secret for")

	hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://evil.example/steal?key="+key)
		w.WriteHeader(http.StatusTemporaryRedirect)
	})
	_, err = New(key, WithHTTPClient(hc)).Token()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "evil.example", "the Location is named")
	assert.NotContains(t, err.Error(), key[:8])

	long := strings.Repeat("x", 5000)
	hc = handlerClient(func(w http.ResponseWriter, r *http.Request) { answer(w, 404, `{"detail":"`+long+`"}`) })
	_, err = New(key, WithHTTPClient(hc)).Token()
	e := asError(t, err)
	assert.LessOrEqual(t, len(e.Message), 200+len("…"))
	assert.Less(t, len(err.Error()), 600)
}

var errReset = syscall.ECONNRESET

// B29: the token goes only to the source's scheme and host; a redirect to
// another host fails naming it, and carries no token.
func TestNewClientKeepsTokenOnItsHost(t *testing.T) {
	var seen []string
	base := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		seen = append(seen, r.URL.Host+" "+r.Header.Get("Authorization"))
		resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"access_token":"t"}`)), Request: r}
		if r.URL.Path == "/api/v1/go-elsewhere" {
			resp.StatusCode = http.StatusFound
			resp.Header.Set("Location", "https://evil.example/collect")
		}
		return resp, nil
	})}
	s := New(testKey, WithHTTPClient(base))
	client := NewClient(context.WithValue(background, oauth2.HTTPClient, base), s)

	_, err := client.Get("https://evil.example/api")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "evil.example")
	_, err = client.Get("http://thecolony.ai/api/v1/users/me") // the right host, the wrong scheme
	require.Error(t, err)
	assert.Empty(t, seen, "nothing sent, not even an exchange")

	_, err = client.Get(DefaultBaseURL + "/go-elsewhere")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "evil.example")
	for _, line := range seen {
		assert.False(t, strings.HasPrefix(line, "evil.example"), "nothing reached the other host: %q", line)
	}
	resp, err := client.Get("https://THECOLONY.ai/api/v1/users/me")
	require.NoError(t, err, "host names compare without case")
	resp.Body.Close()
}

// NewClient takes any oauth2.TokenSource; a static one has no host limit.
func TestNewClientAnySource(t *testing.T) {
	var auth []string
	base := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		auth = append(auth, r.Header.Get("Authorization"))
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	})}
	client := NewClient(context.WithValue(background, oauth2.HTTPClient, base), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "static"}))
	resp, err := client.Get("https://anywhere.example/x")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, []string{"Bearer static"}, auth)

	_, err = NewClient(background, nil).Get("https://anywhere.example/x")
	require.Error(t, err)
}

// B11: after a 401 the request is never resent with the rejected token, and
// the context client's cookie jar is kept.
func TestNewClientNeverResendsRejectedToken(t *testing.T) {
	var auth []string
	base := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		resp := &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"access_token":"same"}`)), Request: r}
		if !strings.HasSuffix(r.URL.Path, "/auth/token") {
			auth = append(auth, r.Header.Get("Authorization"))
			resp.StatusCode = 401
		}
		return resp, nil
	})}
	jar, _ := cookiejar.New(nil)
	base.Jar = jar
	client := NewClient(context.WithValue(background, oauth2.HTTPClient, base), New(testKey, WithHTTPClient(base)))
	assert.Same(t, jar, client.Jar)
	resp, err := client.Get(apiURL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 401, resp.StatusCode)
	assert.Equal(t, []string{"Bearer same"}, auth, "the server gave the same token again: not resent")
}

// panicky is a Cache and Ledger whose methods panic while panics is set.
type panicky struct {
	Cache
	load, store, del, update atomic.Bool
}

func (p *panicky) Load(k string) (*oauth2.Token, error) {
	if p.load.Load() {
		panic("Load exploded")
	}
	return p.Cache.Load(k)
}

func (p *panicky) Store(k string, tok *oauth2.Token) error {
	if p.store.Load() {
		panic("Store exploded")
	}
	return p.Cache.Store(k, tok)
}

func (p *panicky) Delete(k string) error {
	if p.del.Load() {
		panic("Delete exploded")
	}
	return p.Cache.Delete(k)
}

func (p *panicky) Update(name string, fn func([]byte) ([]byte, error)) error {
	if p.update.Load() {
		panic("Update exploded with " + testKey)
	}
	return p.Cache.(Ledger).Update(name, fn)
}

// B24: a WithTOTP function, Cache or Ledger that panics is an *Error for
// that call, and the source keeps working: no held lock, no unclosed wait.
func TestPanicsNeverWedge(t *testing.T) {
	for _, which := range []string{"totp", "load", "store", "update", "delete", "transport"} {
		t.Run(which, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				c := &panicky{Cache: NewMemoryCache()}
				var totpPanics, rtPanics atomic.Bool
				srv := colonyauthtest.NewUnstarted()
				hc := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
					if rtPanics.Load() {
						panic("RoundTrip exploded")
					}
					return srv.Transport().RoundTrip(r)
				})}
				s := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(hc), WithCache(c),
					WithTOTP(func() (string, error) {
						if totpPanics.Load() {
							panic("TOTP exploded")
						}
						return "123456", nil
					}))
				switch which {
				case "totp":
					totpPanics.Store(true)
				case "load":
					c.load.Store(true)
				case "store":
					c.store.Store(true)
				case "update":
					c.update.Store(true)
				case "transport":
					rtPanics.Store(true)
				case "delete":
					c.del.Store(true)
					s.Invalidate(mustToken(t, s)) // must neither panic nor wedge
					mustToken(t, s)
					return
				}
				ctx, cancel := context.WithTimeout(background, time.Second)
				defer cancel()
				_, err := s.TokenContext(ctx)
				require.Error(t, err)
				e := asError(t, err)
				assert.Contains(t, e.Error(), "panicked")
				assert.NotContains(t, e.Error(), testKey)
				assert.NotErrorIs(t, err, context.DeadlineExceeded, "an error, not a hang")

				totpPanics.Store(false)
				rtPanics.Store(false)
				c.load.Store(false)
				c.store.Store(false)
				c.update.Store(false)
				_, err = s.TokenContext(ctx)
				require.NoError(t, err, "the source works again")
			})
		})
	}
}

// B24: a zero TokenSource and a nil context are errors, not panics.
func TestMisuseIsAnError(t *testing.T) {
	var zero TokenSource
	assert.NotPanics(t, func() {
		_, err := zero.Token()
		asError(t, err)
		_, err = zero.TokenContext(background)
		asError(t, err)
		zero.Invalidate(&oauth2.Token{AccessToken: "x"})
		_ = zero.String()
		assert.Error(t, zero.Check())
	})
	hc := handlerClient(func(w http.ResponseWriter, r *http.Request) { answer(w, 200, `{"access_token":"t"}`) })
	s := New(testKey, WithHTTPClient(hc))
	assert.NotPanics(t, func() {
		//lint:ignore SA1012 a nil context is the misuse under test
		_, err := s.TokenContext(nil) //nolint:staticcheck
		asError(t, err)
	})
	assert.NoError(t, s.Check())
	assert.ErrorIs(t, New("").Check(), ErrInvalidKey)
}

// writeEntry puts a token entry into a cache directory, as an attacker or
// a corrupted disk might.
func writeEntry(t *testing.T, dir, key, access string, expiry time.Time) string {
	t.Helper()
	path := filepath.Join(dir, cacheKey(DefaultBaseURL, key)+".json")
	data, _ := json.Marshal(cacheEntry{AccessToken: access, Expiry: expiry})
	require.NoError(t, os.WriteFile(path, data, 0o600))
	return path
}

// B25: the file cache trusts neither its directory nor its entries.
func TestFileCacheTrust(t *testing.T) {
	bubble(t, func(t *testing.T) {
		exchanged := fakeJWT(fmt.Sprintf(`{"exp":%d}`, time.Now().Add(24*time.Hour).Unix()))
		hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
			answer(w, 200, `{"access_token":"`+exchanged+`"}`)
		})
		source := func(dir string, logs *logBuffer) *TokenSource {
			return New(testKey, WithHTTPClient(hc), WithFileCache(dir), WithLogger(logs.logger()))
		}
		valid := fakeJWT(fmt.Sprintf(`{"exp":%d,"sub":"attacker"}`, time.Now().Add(24*time.Hour).Unix()))

		// A world-writable directory: another user could plant a token.
		open := filepath.Join(t.TempDir(), "open")
		require.NoError(t, os.Mkdir(open, 0o700))
		require.NoError(t, os.Chmod(open, 0o777))
		writeEntry(t, open, testKey, valid, time.Now().Add(24*time.Hour))
		var logs logBuffer
		assert.Equal(t, exchanged, mustToken(t, source(open, &logs)).AccessToken, "the planted token is not served")
		assert.Contains(t, logs.String(), "world-writable")
		assert.Contains(t, logs.String(), "level=DEBUG")

		cases := map[string]func(dir string){
			"symlink to /dev/zero": func(dir string) {
				require.NoError(t, os.Symlink("/dev/zero", filepath.Join(dir, cacheKey(DefaultBaseURL, testKey)+".json")))
			},
			"200 MiB entry": func(dir string) {
				path := writeEntry(t, dir, testKey, valid, time.Now().Add(time.Hour))
				require.NoError(t, os.Truncate(path, 200<<20)) // sparse: costs no disk
			},
			"JWT exp 400 days out": func(dir string) {
				writeEntry(t, dir, testKey, fakeJWT(fmt.Sprintf(`{"exp":%d}`, time.Now().Add(400*24*time.Hour).Unix())), time.Now().Add(time.Hour))
			},
			"opaque token expiring in 2090": func(dir string) {
				writeEntry(t, dir, testKey, "opaque-planted", time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC))
			},
			"token with CR LF": func(dir string) {
				writeEntry(t, dir, testKey, "bad\r\nX-Injected: 1", time.Now().Add(time.Hour))
			},
		}
		for name, plant := range cases {
			dir := t.TempDir()
			plant(dir)
			var logs logBuffer
			assert.Equal(t, exchanged, mustToken(t, source(dir, &logs)).AccessToken, name)
		}
	})
}

// B25: a FIFO entry is not opened (opening it would block until a writer
// comes). Outside a bubble, with a watchdog: a blocked open would stop a
// bubble's fake time and hang the test instead of failing it.
func TestFileCacheFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, cacheKey(DefaultBaseURL, testKey)+".json")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	hc := handlerClient(func(w http.ResponseWriter, r *http.Request) { answer(w, 200, `{"access_token":"exchanged"}`) })
	done := make(chan error, 1)
	go func() {
		_, err := New(testKey, WithHTTPClient(hc), WithFileCache(dir)).Token()
		done <- err
	}()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second): // a watchdog, not a measurement
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil { // release the reader
			f.Close()
		}
		t.Fatal("Token blocked on a FIFO in the cache directory")
	}
}

// B25: an Invalidate never leaves the invalidated token cached, even when a
// Store of that token comes after it.
func TestInvalidateBeatsLateStore(t *testing.T) {
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		srv, s := newFake(t, WithFileCache(dir))
		tok := mustToken(t, s)
		st := s.cur.Load()
		s.Invalidate(tok)
		s.storeCache(st) // as a flight that finished late would
		assert.Empty(t, tokenFiles(t, dir))
		assert.NotEqual(t, tok.AccessToken, mustToken(t, s).AccessToken)
		assert.Equal(t, 2, srv.Exchanges())
	})
}

// B25 (and a mutation left unnoticed before): an opaque token is cached
// with its real expiry, not its refresh point.
func TestOpaqueTokenCachedWithRealExpiry(t *testing.T) {
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
			answer(w, 200, `{"access_token":"opaque-1","expires_in":3600}`)
		})
		mustToken(t, New(testKey, WithHTTPClient(hc), WithFileCache(dir)))
		files := tokenFiles(t, dir)
		require.Len(t, files, 1)
		data, err := os.ReadFile(files[0])
		require.NoError(t, err)
		tok, err := parseCacheEntry(data)
		require.NoError(t, err)
		assert.True(t, tok.Expiry.Equal(time.Now().Add(time.Hour)), "expiry %v", tok.Expiry)
	})
}

// B27: a JWT that expires in 1 s is exchanged once a minute, not nine times
// a second, except right after Invalidate.
func TestShortTokenOnceAMinute(t *testing.T) {
	bubble(t, func(t *testing.T) {
		var n atomic.Int32
		hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			answer(w, 200, `{"access_token":"`+fakeJWT(fmt.Sprintf(`{"exp":%d,"n":%d}`, time.Now().Add(time.Second).Unix(), n.Load()))+`"}`)
		})
		s := New(testKey, WithHTTPClient(hc))
		start := time.Now()
		for time.Since(start) < 10*time.Minute {
			s.Token()
			time.Sleep(100 * time.Millisecond)
		}
		assert.LessOrEqual(t, n.Load(), int32(11), "about one a minute")
		assert.GreaterOrEqual(t, n.Load(), int32(9))
		before := n.Load()
		s.Invalidate(mustToken(t, s))
		mustToken(t, s)
		assert.Equal(t, before+1, n.Load(), "Invalidate exchanges at once")
	})
}

// maintenance is a /auth/token that answers 503 with Retry-After: 999999
// while down, and records when it was asked.
type maintenance struct {
	mu         sync.Mutex
	down       bool
	times      []time.Time
	retryAfter string // "" = the default, 999999
}

func (m *maintenance) client() *http.Client {
	return handlerClient(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.times = append(m.times, time.Now())
		if m.down {
			w.Header().Set("Retry-After", cmp.Or(m.retryAfter, "999999"))
			answer(w, 503, `{"detail":"maintenance"}`)
			return
		}
		answer(w, 200, `{"access_token":"`+fakeJWT(fmt.Sprintf(`{"exp":%d,"n":%d}`, time.Now().Add(24*time.Hour).Unix(), len(m.times)))+`"}`)
	})
}

func (m *maintenance) set(down bool) { m.mu.Lock(); m.down = down; m.mu.Unlock() }

func (m *maintenance) requests() []time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.times)
}

// B27: a 503 asking for 999999 s is obeyed for at most 10 minutes, by a
// starting agent and by a running one, whose refresh attempts stay at most
// 10 minutes apart.
func TestLongRetryAfterCapped(t *testing.T) {
	bubble(t, func(t *testing.T) {
		m := &maintenance{down: true}
		starting := New(testKey, WithHTTPClient(m.client()))
		_, err := starting.Token()
		require.ErrorIs(t, err, ErrUnavailable)
		assert.Equal(t, 10*time.Minute, asError(t, err).RetryAfter, "capped at 10 minutes")
		time.Sleep(9 * time.Minute)
		_, err = starting.Token()
		require.ErrorIs(t, err, ErrUnavailable)
		assert.Len(t, m.requests(), 1)
		time.Sleep(time.Minute)
		m.set(false)
		mustToken(t, starting)

		r := &maintenance{}
		running := New(testKey, WithHTTPClient(r.client()))
		tok := mustToken(t, running)
		time.Sleep(time.Until(tok.Expiry))
		r.set(true)
		start := time.Now()
		for time.Since(start) < 3*time.Hour {
			assert.Equal(t, tok.AccessToken, mustToken(t, running).AccessToken)
			time.Sleep(10 * time.Second)
		}
		times := r.requests()[1:]
		require.Greater(t, len(times), 10)
		for i := 1; i < len(times); i++ {
			assert.LessOrEqual(t, times[i].Sub(times[i-1]), 10*time.Minute+10*time.Second, "attempt %d", i)
		}
	})
}

// Mutations left unnoticed before: with Jitter set, refreshes of a valid
// token stay 4–5 minutes apart and a remembered failure cools down 30–60 s.
func TestJitteredWaits(t *testing.T) {
	bubble(t, func(t *testing.T) {
		r := DefaultRetry()
		r.Jitter = 1
		var cools []time.Duration
		for range 20 {
			hc := handlerClient(func(w http.ResponseWriter, _ *http.Request) { answer(w, 401, `{"detail":"bad key"}`) })
			_, err := New(testKey, WithHTTPClient(hc), WithRetry(r)).Token()
			d := asError(t, err).RetryAfter
			assert.True(t, d >= 30*time.Second && d <= 60*time.Second, "cool-down %v", d)
			cools = append(cools, d)
		}
		assert.Greater(t, len(slices.Compact(slices.Sorted(slices.Values(cools)))), 1, "drawn, not fixed")

		m := &maintenance{retryAfter: "0"} // a 503 without a wait of its own
		s := New(testKey, WithHTTPClient(m.client()), WithRetry(r))
		tok := mustToken(t, s)
		time.Sleep(time.Until(tok.Expiry))
		m.set(true)
		start := time.Now()
		for time.Since(start) < 2*time.Hour {
			mustToken(t, s)
			time.Sleep(time.Second)
		}
		times := m.requests()[1:]
		require.Greater(t, len(times), 5)
		for i := 1; i < len(times); i++ {
			gap := times[i].Sub(times[i-1])
			assert.True(t, gap >= 4*time.Minute && gap <= 5*time.Minute+time.Second, "gap %v", gap)
		}
	})
}

// Mutation left unnoticed before: WithRetry copies RetryOn, so a caller that
// reuses its slice changes nothing.
func TestWithRetryCopiesRetryOn(t *testing.T) {
	bubble(t, func(t *testing.T) {
		var n atomic.Int32
		hc := handlerClient(func(w http.ResponseWriter, _ *http.Request) { n.Add(1); answer(w, 500, `{"detail":"x"}`) })
		r := RetryConfig{MaxRetries: 2, RetryOn: []int{502}}
		s := New(testKey, WithHTTPClient(hc), WithRetry(r))
		r.RetryOn[0] = 500
		s.Token()
		assert.EqualValues(t, 1, n.Load(), "500 is not retried: the source kept its own copy")
	})
}
