package colonyauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
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
		asciiJSON(jsonEscape(key)),
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
