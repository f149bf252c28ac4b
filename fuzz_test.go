package colonyauth

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
)

// fuzzNow is the fixed "now" of the fuzz targets.
var fuzzNow = time.Date(2026, 5, 21, 12, 0, 0, 0, time.UTC)

// FuzzTokenResponse: any status, body and headers give either a token (only
// from a 2xx JSON object with a non-empty access_token) or an *Error that
// carries the status and never the key. Never a panic.
func FuzzTokenResponse(f *testing.F) {
	f.Add(200, []byte(`{"access_token":"abc","token_type":"bearer","expires_in":3600}`), "application/json", "")
	f.Add(200, []byte(`{"access_token":null}`), "application/json", "")
	f.Add(401, []byte(`{"detail":{"code":"AUTH_2FA_INVALID","message":"`+testKey+`"}}`), "application/json", "")
	f.Add(429, []byte(`{"detail":"slow down"}`), "application/json", "Thu, 21 May 2026 12:01:00 GMT")
	f.Add(502, []byte(`<html>Bad Gateway</html>`), "text/html", "5")
	f.Add(307, []byte(``), "", "")
	f.Fuzz(func(t *testing.T, status int, body []byte, contentType, retryAfter string) {
		status = 100 + int(uint(status)%500)
		s := New(testKey, WithClock(fixedClock{}))
		req, _ := http.NewRequest(http.MethodPost, s.tokenURL, nil)
		resp := &http.Response{
			StatusCode: status,
			Header:     http.Header{"Content-Type": {contentType}, "Retry-After": {retryAfter}, "Location": {string(body)}},
			Body:       http.NoBody,
			Request:    req,
		}
		x, aerr := s.classify(resp, body)
		if aerr == nil {
			require.True(t, status >= 200 && status < 300, "a token from status %d", status)
			var v struct {
				AccessToken string `json:"access_token"`
			}
			require.NoError(t, json.Unmarshal(body, &v))
			require.Equal(t, v.AccessToken, x.access)
			require.NotEmpty(t, x.access)
			st := x.state(fuzzNow)
			require.True(t, st.tok.Expiry.After(fuzzNow), "Expiry %v not after now", st.tok.Expiry)
			require.False(t, st.tok.Expiry.After(st.exp))
			require.False(t, st.due.After(st.expires))
			return
		}
		e := aerr.err
		require.Equal(t, status, e.StatusCode)
		msg := e.Error()
		require.True(t, strings.HasPrefix(msg, "colonyauth: "))
		require.NotContains(t, msg, testKey)
		require.GreaterOrEqual(t, e.RetryAfter, time.Duration(0))
		require.False(t, aerr.retry && (status == 401 || status == 403 || status == 429), "status %d retried", status)
	})
}

// fixedClock is a clock.Clock stopped at fuzzNow.
type fixedClock struct{ clock.Clock }

func (fixedClock) Now() time.Time { return fuzzNow }

// FuzzRetryAfter: any header value gives a wait in [0, 24h].
func FuzzRetryAfter(f *testing.F) {
	for _, v := range []string{"", "0", "120", "-1", "1e3", "99999999999999999999", "Thu, 21 May 2026 12:01:00 GMT", "Mon, 02 Jan 2006 15:04:05 MST", "٣٠"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d := parseRetryAfter(v, fuzzNow)
		require.GreaterOrEqual(t, d, time.Duration(0))
		require.LessOrEqual(t, d, 24*time.Hour)
	})
}

// FuzzJWTExpiry: any token and expires_in give an expiry after now, a
// refresh time no later than it, and never a panic.
func FuzzJWTExpiry(f *testing.F) {
	f.Add(fakeJWT(`{"exp":1779364800}`), int64(0))
	f.Add(fakeJWT(`{"exp":1e300,"iat":-5}`), int64(-1))
	f.Add(fakeJWT(`{"exp":"soon"}`), int64(1e12))
	f.Add("eyJ.eyJ.", int64(86400))
	f.Add("a.b.c.d", int64(3600))
	f.Fuzz(func(t *testing.T, tok string, expiresIn int64) {
		if exp, iat, ok := jwtClaims(tok); ok {
			require.True(t, exp.Year() >= 1970 && exp.Year() <= 9999)
			require.True(t, iat.IsZero() || iat.Year() >= 1970 && iat.Year() <= 9999)
		}
		st := exchanged{access: tok, expiresIn: expiresIn}.state(fuzzNow)
		require.True(t, st.exp.After(fuzzNow))
		require.LessOrEqual(t, st.exp.Sub(fuzzNow), maxLifetime)
		require.True(t, st.tok.Expiry.After(fuzzNow))
		require.False(t, st.tok.Expiry.After(st.exp))
		require.True(t, st.due.After(fuzzNow))
	})
}

// Hostile answers from /auth/token, end to end: each is a typed error or a
// token with a sane expiry, never a panic or a hang.
func TestHostileAnswers(t *testing.T) {
	jwt := func(exp string) string { return fakeJWT(`{"exp":` + exp + `}`) }
	cases := []struct {
		name    string
		status  int
		header  http.Header
		body    string
		bodyLen int64 // an endless body of this many bytes instead of body
		want    error // nil: a token
		life    time.Duration
	}{
		{name: "HTML 200", status: 200, header: http.Header{"Content-Type": {"text/html"}}, body: "<html><body>Sign in</body></html>", want: ErrMalformedResponse},
		{name: "truncated JSON", status: 200, body: `{"access_token":"abc","tok`, want: ErrMalformedResponse},
		{name: "1 GiB body", status: 200, bodyLen: 1 << 30, want: ErrMalformedResponse},
		{name: "null token", status: 200, body: `{"access_token":null,"token_type":"bearer"}`, want: ErrMalformedResponse},
		{name: "array", status: 200, body: `[{"access_token":"abc"}]`, want: ErrMalformedResponse},
		{name: "huge exp", status: 200, body: `{"access_token":"` + jwt("1e300") + `"}`, life: 23 * time.Hour},
		{name: "exp past year 9999", status: 200, body: `{"access_token":"` + jwt("253402300800") + `","expires_in":3600}`, life: time.Hour},
		{name: "negative exp", status: 200, body: `{"access_token":"` + jwt("-1") + `"}`, life: 23 * time.Hour},
		{name: "expires_in -1", status: 200, body: `{"access_token":"opaque","expires_in":-1}`, life: 23 * time.Hour},
		{name: "expires_in 10^12", status: 200, body: `{"access_token":"opaque","expires_in":1000000000000}`, life: 23 * time.Hour},
		{name: "expires_in NaN-ish", status: 200, body: `{"access_token":"opaque","expires_in":"NaN"}`, life: 23 * time.Hour},
		{name: "token with newline", status: 200, body: `{"access_token":"abc\ndef"}`, want: ErrMalformedResponse},
		{name: "non-ASCII Retry-After", status: 503, header: http.Header{"Retry-After": {"٣٠ ثانية"}}, body: `{"detail":"down"}`, want: ErrUnavailable},
		{name: "non-ASCII content type", status: 502, header: http.Header{"Content-Type": {"téxt/html; ☃"}}, body: "<p>☃</p>", want: ErrUnavailable},
		{name: "non-ASCII Location", status: 307, header: http.Header{"Location": {"https://ëvil.example/☃"}}},
		{name: "deeply nested detail", status: 401, body: `{"detail":` + strings.Repeat(`[`, 5000) + strings.Repeat(`]`, 5000) + `}`, want: ErrInvalidKey},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				var read atomic.Int64
				hc := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
					h := c.header.Clone()
					if h == nil {
						h = http.Header{}
					}
					resp := &http.Response{StatusCode: c.status, Header: h, Request: r}
					if c.bodyLen > 0 {
						resp.Body = &limitedZeros{left: c.bodyLen, read: &read}
					} else {
						resp.Body = &limitedZeros{text: c.body, read: &read}
					}
					return resp, nil
				})}
				s := New(testKey, WithHTTPClient(hc), WithRetry(RetryConfig{MaxRetries: 1}))
				tok, err := s.Token()
				assert.LessOrEqual(t, read.Load(), int64(2*(maxBody+64<<10)), "read at most 1 MiB per attempt")
				if c.want == nil && c.life == 0 { // only "no panic, typed error"
					asError(t, err)
					return
				}
				if c.want != nil {
					require.ErrorIs(t, err, c.want)
					assert.NotContains(t, fmt.Sprint(err), testKey)
					return
				}
				require.NoError(t, err)
				assert.Equal(t, refreshAt(tok, time.Now(), c.life), tok.Expiry)
			})
		})
	}
}

// limitedZeros is a response body: text, or left bytes of zeros.
type limitedZeros struct {
	text string
	left int64
	read *atomic.Int64
}

func (b *limitedZeros) Read(p []byte) (int, error) {
	if b.text != "" {
		n := copy(p, b.text)
		b.text = b.text[n:]
		b.read.Add(int64(n))
		return n, nil
	}
	if b.left <= 0 {
		return 0, io.EOF
	}
	n := int(math.Min(float64(len(p)), float64(b.left)))
	clear(p[:n])
	b.left -= int64(n)
	b.read.Add(int64(n))
	return n, nil
}

func (b *limitedZeros) Close() error { return nil }

// entryCache is a Cache whose only entry is the file content data.
type entryCache struct{ data []byte }

func (c entryCache) Load(string) (*oauth2.Token, error) { return parseCacheEntry(c.data) }
func (entryCache) Store(string, *oauth2.Token) error    { return nil }
func (entryCache) Delete(string) error                  { return nil }

// FuzzCacheEntry: any cache file gives either no token or one that passes
// every check an exchanged token gets: header-safe characters, an expiry
// after now and at most 366 days away, a refresh time no later than it.
// Never a panic.
func FuzzCacheEntry(f *testing.F) {
	f.Add([]byte(`{"access_token":"` + fakeJWT(`{"exp":1779454800}`) + `","expiry":"2026-05-22T12:00:00Z"}`))
	f.Add([]byte(`{"access_token":"opaque","expiry":"2090-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"access_token":"bad\r\nX: 1","expiry":"2026-05-22T12:00:00Z"}`))
	f.Add([]byte(`{"access_token":"` + fakeJWT(`{"exp":1900000000}`) + `","expiry":"2026-05-21T13:00:00Z"}`))
	f.Add([]byte(`{"access_token":"x","expiry":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"access_token":["x"]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := New(testKey, WithClock(fixedClock{}), WithCache(entryCache{data}))
		st, panicked := s.cachedState()
		require.Nil(t, panicked)
		if st == nil {
			return
		}
		require.Empty(t, checkAccessToken(st.tok.AccessToken))
		require.True(t, st.exp.After(fuzzNow))
		require.LessOrEqual(t, st.exp.Sub(fuzzNow), maxLifetime)
		require.False(t, st.tok.Expiry.After(st.exp))
		require.True(t, st.expires.After(fuzzNow))
	})
}
