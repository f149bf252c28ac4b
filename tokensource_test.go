package colonyauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
)

// B1: the request is exactly POST {base}/auth/token with a JSON body
// holding only the key, and the answer's "bearer" becomes "Bearer".
func TestWireFormat(t *testing.T) {
	var got *http.Request
	var body []byte
	hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		answer(w, 200, `{"access_token":"abc.def.ghi","token_type":"bearer"}`)
	})
	s := New(testKey, WithHTTPClient(hc), WithBaseURL("https://colony.example/api/v1/"))
	tok := mustToken(t, s)

	assert.Equal(t, http.MethodPost, got.Method)
	assert.Equal(t, "https://colony.example/api/v1/auth/token", got.URL.String())
	assert.Equal(t, "application/json", got.Header.Get("Content-Type"))
	assert.Equal(t, "application/json", got.Header.Get("Accept"))
	assert.Equal(t, "colonyauth-go/"+version, got.Header.Get("User-Agent"))
	assert.Empty(t, got.Header.Get("Authorization"))
	var fields map[string]any
	require.NoError(t, json.Unmarshal(body, &fields))
	assert.Equal(t, map[string]any{"api_key": testKey}, fields)

	assert.Equal(t, "abc.def.ghi", tok.AccessToken)
	assert.Equal(t, "Bearer", tok.TokenType)
	assert.Equal(t, "Bearer", tok.Type())
}

// B1: 2xx answers without a usable bearer token are ErrMalformedResponse.
func TestMalformedTokenResponse(t *testing.T) {
	for body, ok := range map[string]bool{
		`{"access_token":"t","token_type":"bearer"}`: true,
		`{"access_token":"t","token_type":"BEARER"}`: true,
		`{"access_token":"t"}`:                       true,
		`{"access_token":"t","token_type":""}`:       true,
		`{"access_token":"t","token_type":"mac"}`:    false,
		`{"access_token":"t","token_type":7}`:        false,
		`{"access_token":""}`:                        false,
		`{"access_token":null}`:                      false,
		`{"access_token":42}`:                        false,
		`{"token_type":"bearer"}`:                    false,
		`{"access_token":"a b"}`:                     false,
		`<html>login</html>`:                         false,
		`{"access_token":"t"`:                        false,
		``:                                           false,
	} {
		t.Run(body, func(t *testing.T) {
			var calls atomic.Int32
			hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				answer(w, 200, body)
			})
			tok, err := New(testKey, WithHTTPClient(hc)).Token()
			if ok {
				require.NoError(t, err)
				assert.Equal(t, "Bearer", tok.TokenType)
				return
			}
			require.ErrorIs(t, err, ErrMalformedResponse)
			assert.Nil(t, tok)
			assert.EqualValues(t, 1, calls.Load(), "a malformed answer is not retried")
			assert.Contains(t, err.Error(), "base URL")
		})
	}
}

// B5: each failure maps to its sentinel, keeps the Colony code, unwraps to
// the oauth2.RetrieveError, and says what to do next.
func TestErrorClassification(t *testing.T) {
	cases := []struct {
		status   int
		body     string
		sentinel error
		code     string
		hint     string
	}{
		{401, `{"detail":"Invalid API key"}`, ErrInvalidKey, "", "create a new key"},
		{403, `{"detail":{"code":"AUTH_FORBIDDEN","message":"key disabled"}}`, ErrInvalidKey, "AUTH_FORBIDDEN", "create a new key"},
		{401, `{"detail":{"code":"AUTH_2FA_REQUIRED","message":"2FA code required"}}`, ErrTwoFactorRequired, "AUTH_2FA_REQUIRED", "WithTOTP"},
		{401, `{"detail":{"code":"AUTH_2FA_INVALID","message":"bad code"}}`, ErrTwoFactorInvalid, "AUTH_2FA_INVALID", "wait for the next code"},
		{403, `{"detail":{"code":"AUTH_2FA_INVALID","message":"bad code"}}`, ErrTwoFactorInvalid, "AUTH_2FA_INVALID", "do not rotate"},
		// §1: the status decides the class, the code only refines a 401/403.
		{400, `{"detail":{"code":"AUTH_2FA_INVALID","message":"bad code"}}`, nil, "AUTH_2FA_INVALID", "bad code"},
		{429, `{"detail":{"code":"AUTH_2FA_INVALID","message":"too many codes"}}`, ErrRateLimited, "AUTH_2FA_INVALID", "try again in 1m30s, retrying sooner"},
		{404, `{"detail":{"code":"AUTH_2FA_REQUIRED","message":"nope"}}`, nil, "AUTH_2FA_REQUIRED", "should end in /api/v1"},
		{429, `{"detail":"slow down"}`, ErrRateLimited, "", "try again in 1m30s, retrying sooner"},
		{502, `<html><body>Bad Gateway</body></html>`, ErrUnavailable, "", "try again in 1m30s (a running program"},
		{404, `{"detail":"Not Found"}`, nil, "", "should end in /api/v1"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d %s", c.status, c.code), func(t *testing.T) {
			hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "90")
				ct := "application/json"
				if strings.HasPrefix(c.body, "<") {
					ct = "text/html; charset=utf-8"
				}
				w.Header().Set("Content-Type", ct)
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			})
			s := New(testKey, WithHTTPClient(hc), WithRetry(RetryConfig{MaxRetries: 0, MaxDelay: 120 * time.Second}))
			_, err := s.Token()
			require.Error(t, err)
			e := asError(t, err)
			for _, sentinel := range []error{ErrInvalidKey, ErrTwoFactorRequired, ErrTwoFactorInvalid, ErrRateLimited, ErrUnavailable, ErrMalformedResponse} {
				assert.Equal(t, sentinel == c.sentinel, errors.Is(err, sentinel), "errors.Is(err, %v)", sentinel)
			}
			var re *oauth2.RetrieveError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, c.status, re.Response.StatusCode)
			assert.Equal(t, c.status, e.StatusCode)
			assert.Equal(t, c.code, e.Code)
			assert.Equal(t, 1, e.Attempts)
			msg := err.Error()
			assert.True(t, strings.HasPrefix(msg, "colonyauth: "), msg)
			assert.Contains(t, msg, fmt.Sprint(c.status))
			assert.Contains(t, msg, c.hint)
			if c.code != "" {
				assert.Contains(t, msg, c.code)
			}
			if c.status == 429 {
				assert.Equal(t, 90*time.Second, e.RetryAfter)
			}
			if c.sentinel == ErrTwoFactorInvalid || c.sentinel == ErrTwoFactorRequired {
				assert.NotContains(t, msg, "create a new key", "a 2FA failure is not a key failure")
			}
		})
	}
}

// B9: concurrent callers share one exchange and get one token.
func TestOneExchangeInFlight(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		srv.SetLatency(time.Second)
		var wg sync.WaitGroup
		toks := make([]*oauth2.Token, 50)
		for i := range toks {
			wg.Go(func() { toks[i] = mustToken(t, s) })
		}
		wg.Wait()
		assert.Equal(t, 1, srv.Exchanges())
		for _, tok := range toks {
			assert.Same(t, toks[0], tok)
		}
	})
}

// B10: a caller whose context ends returns at once with ctx's error; the
// exchange goes on and the callers still waiting get its token.
func TestTokenContextLeavesOthersWaiting(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		srv.FailNext(2, http.StatusBadGateway, 0) // token at 0+2+4 = 6 s
		start := time.Now()

		patient := make(chan *oauth2.Token, 1)
		go func() { patient <- mustToken(t, s) }()

		ctx, cancel := context.WithTimeout(background, 3*time.Second)
		defer cancel()
		_, err := s.TokenContext(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		asError(t, err)
		assert.Equal(t, 3*time.Second, time.Since(start))

		tok := <-patient
		assert.NotEmpty(t, tok.AccessToken)
		assert.Equal(t, 6*time.Second, time.Since(start))
		assert.Equal(t, 3, srv.Exchanges(), "the impatient caller did not restart the schedule")

		cancelled, cancelNow := context.WithCancel(background)
		cancelNow()
		got, err := s.TokenContext(cancelled)
		require.NoError(t, err, "a valid token needs no waiting, so a done ctx does not matter")
		assert.Same(t, tok, got)
	})
}

// B10: Token runs under WithContext.
func TestWithContextBoundsToken(t *testing.T) {
	bubble(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(background, 10*time.Second)
		defer cancel()
		srv, s := newFake(t, WithContext(ctx))
		srv.Down(http.StatusBadGateway)
		start := time.Now()
		_, err := s.Token()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 10*time.Second, time.Since(start))
		synctest.Wait()
		assert.Equal(t, 3, srv.Exchanges(), "attempts at 0, 2 and 6 s; the one due at 14 s was never made")
	})
}

// B10: WithHTTPClient, else the WithContext ctx's oauth2.HTTPClient, else a
// private client with a 30 s timeout; each copied so redirects are refused.
func TestHTTPClientPrecedence(t *testing.T) {
	var used string
	client := func(name string) *http.Client {
		return handlerClient(func(w http.ResponseWriter, r *http.Request) {
			used = name
			answer(w, 200, `{"access_token":"t"}`)
		})
	}
	ctx := context.WithValue(background, oauth2.HTTPClient, client("context"))

	mustToken(t, New(testKey, WithContext(ctx), WithHTTPClient(client("option"))))
	assert.Equal(t, "option", used)
	mustToken(t, New(testKey, WithContext(ctx)))
	assert.Equal(t, "context", used)

	s := New(testKey)
	assert.NotSame(t, http.DefaultClient, s.client)
	assert.Equal(t, 30*time.Second, s.client.Timeout)
	assert.Nil(t, s.client.Transport)
	assert.NotNil(t, s.client.CheckRedirect)

	mine := client("mine")
	New(testKey, WithHTTPClient(mine))
	assert.Nil(t, mine.CheckRedirect, "the caller's client is not modified")
}

// B14: neither the key nor a token reaches an error, a log line, String or
// any fmt verb, even when the server echoes them back.
func TestNoSecretLeaks(t *testing.T) {
	for _, key := range []string{testKey, "legacy-Secret.Key~42"} {
		t.Run(key[:6], func(t *testing.T) { testNoSecretLeaks(t, key) })
	}
}

func testNoSecretLeaks(t *testing.T, testKey string) {
	const token = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjk5OTk5OTk5OTl9.c2lnbmF0dXJl"
	var logs logBuffer
	var n atomic.Int32
	hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			answer(w, 502, `{"detail":"upstream rejected `+testKey+` and `+token+`"}`)
		case 2:
			answer(w, 200, `{"access_token":"`+token+`","token_type":"bearer"}`)
		default:
			answer(w, 401, `{"detail":{"code":"AUTH_BAD","message":"key `+testKey+` is bad, your token was `+token+`"}}`)
		}
	})
	s := New(testKey, WithHTTPClient(hc), WithLogger(logs.logger()), WithRetry(RetryConfig{MaxRetries: 1, BaseDelay: time.Nanosecond, MaxDelay: time.Nanosecond}))
	tok := mustToken(t, s)
	require.Equal(t, token, tok.AccessToken)
	s.Invalidate(tok)
	_, err := s.Token()
	require.ErrorIs(t, err, ErrInvalidKey)
	var re *oauth2.RetrieveError
	require.ErrorAs(t, err, &re)

	shown := []string{
		err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err),
		fmt.Sprintf("%#v", *asError(t, err)), re.Error(), string(re.Body), fmt.Sprintf("%#v", re),
		s.String(), fmt.Sprintf("%v", s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s), fmt.Sprint(s),
		logs.String(),
	}
	if re.Response.Request != nil && re.Response.Request.GetBody != nil {
		t.Fatal("the RetrieveError's request can replay the key")
	}
	for _, text := range shown {
		assert.NotContains(t, text, testKey)
		assert.NotContains(t, text, token)
		assert.NotContains(t, text, "eyJleHAi") // no part of the token either
	}
	assert.Contains(t, err.Error(), "[REDACTED]", "the server's message is kept, redacted")
	assert.Contains(t, logs.String(), "level=WARN")
	assert.Contains(t, s.String(), "key sha256:")

	_, err = New(testKey+" ", WithHTTPClient(hc)).Token()
	assert.NotContains(t, err.Error(), testKey)
	_, err = New(token, WithHTTPClient(hc)).Token()
	assert.NotContains(t, err.Error(), token)
}

// B15: bad input is an *Error on first use, before any request; never a panic.
func TestLocalChecks(t *testing.T) {
	cases := []struct {
		name string
		key  string
		opts []Option
		want error // sentinel, or nil for a plain configuration error
		text string
	}{
		{"empty key", "", nil, ErrInvalidKey, "empty"},
		{"trailing newline", testKey + "\n", nil, ErrInvalidKey, "whitespace"},
		{"inner space", "col_abc def", nil, ErrInvalidKey, "whitespace"},
		{"control character", "col_abc\x00def", nil, ErrInvalidKey, "control"},
		{"JWT as key", "eyJhbGciOiJIUzI1NiJ9.e30.sig", nil, ErrInvalidKey, "JWT"},
		{"negative retries", testKey, []Option{WithRetry(RetryConfig{MaxRetries: -1})}, nil, "MaxRetries"},
		{"MaxDelay < BaseDelay", testKey, []Option{WithRetry(RetryConfig{BaseDelay: time.Minute, MaxDelay: time.Second})}, nil, "MaxDelay"},
		{"jitter > 1", testKey, []Option{WithRetry(RetryConfig{Jitter: 2})}, nil, "Jitter"},
		{"jitter < 0", testKey, []Option{WithRetry(RetryConfig{Jitter: -1})}, nil, "Jitter"},
		{"plain http", testKey, []Option{WithBaseURL("http://thecolony.ai/api/v1")}, nil, "https"},
		{"relative URL", testKey, []Option{WithBaseURL("thecolony.ai/api/v1")}, nil, "absolute"},
		{"ftp URL", testKey, []Option{WithBaseURL("ftp://thecolony.ai/api/v1")}, nil, "https"},
		{"credentials in URL", testKey, []Option{WithBaseURL("https://user:pass@thecolony.ai/api/v1")}, nil, "credentials"},
		{"nil HTTP client", testKey, []Option{WithHTTPClient(nil)}, nil, "WithHTTPClient(nil)"},
		{"nil clock", testKey, []Option{WithClock(nil)}, nil, "WithClock(nil)"},
		{"nil context", testKey, []Option{WithContext(nilContext)}, nil, "WithContext(nil)"},
		{"nil TOTP", testKey, []Option{WithTOTP(nil)}, nil, "WithTOTP(nil)"},
		{"nil cache", testKey, []Option{WithCache(nil)}, nil, "WithCache(nil)"},
		{"nil option", testKey, []Option{nil}, nil, "nil Option"},
		{"negative host limit", testKey, []Option{WithHostLimit(-1)}, nil, "WithHostLimit(-1)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var calls atomic.Int32
			hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				answer(w, 200, `{"access_token":"t"}`)
			})
			s := New(c.key, append([]Option{WithHTTPClient(hc)}, c.opts...)...)
			for range 2 {
				tok, err := s.TokenContext(background)
				require.Error(t, err)
				assert.Nil(t, tok)
				e := asError(t, err)
				assert.Zero(t, e.Attempts)
				if c.want != nil {
					assert.ErrorIs(t, err, c.want)
				}
				assert.Contains(t, err.Error(), c.text)
				assert.True(t, strings.HasPrefix(err.Error(), "colonyauth: "), err.Error())
			}
			assert.Zero(t, calls.Load(), "nothing was sent")
			assert.NotPanics(t, func() { s.Invalidate(&oauth2.Token{AccessToken: "x"}); _ = s.String() })
		})
	}

	for _, base := range []string{"http://127.0.0.1:8080/api/v1", "http://localhost/api/v1", "http://[::1]:9/api/v1", "https://thecolony.cc/api/v1"} {
		assert.Nil(t, New(testKey, WithBaseURL(base)).err, base)
	}
	var nilSource *TokenSource
	assert.NotPanics(t, func() {
		_, err := nilSource.Token()
		assert.Error(t, err)
		_, err = nilSource.TokenContext(background)
		assert.Error(t, err)
		nilSource.Invalidate(nil)
		_ = nilSource.String()
	})
}

// B16: a redirect from /auth/token is not followed, so the key does not
// travel to the Location; the error names it.
func TestRedirectNotFollowed(t *testing.T) {
	var hosts []string
	hc := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		hosts = append(hosts, r.URL.Host)
		return &http.Response{
			StatusCode: http.StatusTemporaryRedirect,
			Header:     http.Header{"Location": {"https://elsewhere.example/steal"}},
			Body:       http.NoBody,
			Request:    r,
		}, nil
	})}
	_, err := New(testKey, WithHTTPClient(hc)).Token()
	require.Error(t, err)
	assert.Equal(t, []string{"thecolony.ai"}, hosts)
	assert.Equal(t, http.StatusTemporaryRedirect, asError(t, err).StatusCode)
	assert.Contains(t, err.Error(), "https://elsewhere.example/steal")
	assert.Contains(t, err.Error(), "not followed")
}

// countingBody is a body of 8 MiB that counts what was read from it. It
// ends, so that a reader without a limit fails the test instead of hanging.
type countingBody struct{ n atomic.Int64 }

func (b *countingBody) Read(p []byte) (int, error) {
	if b.n.Load() >= 8<<20 {
		return 0, io.EOF
	}
	b.n.Add(int64(len(p)))
	return len(p), nil
}
func (b *countingBody) Close() error { return nil }

// B16: bodies are read up to 1 MiB: a 64 MiB answer fails after 1 MiB.
func TestBodyLimit(t *testing.T) {
	for _, status := range []int{200, 502} {
		body := &countingBody{}
		hc := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: status, Header: http.Header{}, Body: body, Request: r}, nil
		})}
		_, err := New(testKey, WithHTTPClient(hc), WithRetry(RetryConfig{})).Token()
		require.Error(t, err)
		assert.LessOrEqual(t, body.n.Load(), int64(maxBody+64<<10), "status %d: read %d bytes", status, body.n.Load())
		if status == 200 {
			require.ErrorIs(t, err, ErrMalformedResponse)
			assert.Contains(t, err.Error(), "1 MiB")
		}
	}
}

// B17: one Warn line per retry with attempt, status and delay; Debug on
// success; and nothing at all without a logger (not even to slog.Default).
func TestLogging(t *testing.T) {
	bubble(t, func(t *testing.T) {
		var logs logBuffer
		srv, s := newFake(t, WithLogger(logs.logger()))
		srv.FailNext(2, http.StatusBadGateway, 0)
		mustToken(t, s)
		lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
		require.Len(t, lines, 3, logs.String())
		assert.Contains(t, lines[0], "level=WARN")
		assert.Contains(t, lines[0], "attempt=1 status=502")
		assert.Contains(t, lines[0], "delay=2s")
		assert.Contains(t, lines[1], "attempt=2 status=502")
		assert.Contains(t, lines[1], "delay=4s")
		assert.Contains(t, lines[2], "level=DEBUG")
		assert.Contains(t, lines[2], "attempts=3")
	})
	bubble(t, func(t *testing.T) {
		var logs logBuffer
		old := slog.Default()
		slog.SetDefault(logs.logger())
		defer slog.SetDefault(old)
		srv, s := newFake(t)
		srv.FailNext(2, http.StatusBadGateway, 0)
		mustToken(t, s)
		assert.Empty(t, logs.String())
	})
}

// oauth2.NewClient(ctx, New(key)) works end to end.
func TestWithOAuth2NewClient(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		ctx := context.WithValue(background, oauth2.HTTPClient, srv.Client())
		client := oauth2.NewClient(ctx, s)
		for range 3 {
			resp, err := client.Get(srv.URL + "/users/me")
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, 200, resp.StatusCode)
		}
		assert.Equal(t, 1, srv.Exchanges())
	})
}

var nilContext context.Context // a nil context, as a careless caller might pass
