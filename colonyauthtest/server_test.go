package colonyauthtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func post(t *testing.T, c *http.Client, url, body string) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := c.Post(url+"/auth/token", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp, out
}

func get(t *testing.T, c *http.Client, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/users/me", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestServerIssuesAndChecksTokens(t *testing.T) {
	mock := clock.NewMock()
	srv := NewServer(WithClock(mock), WithLifetime(time.Hour))
	defer srv.Close()
	require.True(t, strings.HasPrefix(srv.URL, "http://127.0.0.1:"), srv.URL)
	require.True(t, strings.HasSuffix(srv.URL, "/api/v1"))
	c := http.DefaultClient // a real loopback round trip

	resp, out := post(t, c, srv.URL, `{"api_key":"`+srv.APIKey+`"}`)
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "bearer", out["token_type"])
	assert.EqualValues(t, 3600, out["expires_in"])
	tok := out["access_token"].(string)
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(payload, &claims))
	assert.EqualValues(t, mock.Now().Add(time.Hour).Unix(), claims["exp"])

	assert.Equal(t, 200, get(t, c, srv.URL, tok))
	assert.Equal(t, 401, get(t, c, srv.URL, ""))
	assert.Equal(t, 401, get(t, c, srv.URL, tok[:len(tok)-2]+"xx"), "bad signature")
	mock.Add(time.Hour)
	assert.Equal(t, 401, get(t, c, srv.URL, tok), "expired")

	_, fresh := post(t, c, srv.URL, `{"api_key":"`+srv.APIKey+`"}`)
	assert.Equal(t, 200, get(t, c, srv.URL, fresh["access_token"].(string)))
	srv.RevokeAll()
	assert.Equal(t, 401, get(t, c, srv.URL, fresh["access_token"].(string)), "revoked")
	assert.Equal(t, 2, srv.Exchanges())
}

func TestServerErrors(t *testing.T) {
	srv := NewUnstarted()
	c := srv.Client()

	resp, out := post(t, c, srv.URL, `{"api_key":"col_wrong"}`)
	assert.Equal(t, 401, resp.StatusCode)
	assert.Equal(t, "AUTH_INVALID_KEY", out["detail"].(map[string]any)["code"])

	srv.FailNext(2, 429, 90*time.Second)
	for range 2 {
		resp, _ = post(t, c, srv.URL, `{"api_key":"`+srv.APIKey+`"}`)
		assert.Equal(t, 429, resp.StatusCode)
		assert.Equal(t, "90", resp.Header.Get("Retry-After"))
	}
	srv.Down(503)
	resp, out = post(t, c, srv.URL, `{"api_key":"`+srv.APIKey+`"}`)
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "Service Unavailable", out["detail"])
	srv.Up()
	resp, _ = post(t, c, srv.URL, `{"api_key":"`+srv.APIKey+`"}`)
	assert.Equal(t, 200, resp.StatusCode)

	srv.RequireTOTP("123456")
	_, out = post(t, c, srv.URL, `{"api_key":"`+srv.APIKey+`"}`)
	assert.Equal(t, "AUTH_2FA_REQUIRED", out["detail"].(map[string]any)["code"])
	_, out = post(t, c, srv.URL, `{"api_key":"`+srv.APIKey+`","totp_code":"000000"}`)
	assert.Equal(t, "AUTH_2FA_INVALID", out["detail"].(map[string]any)["code"])
	resp, _ = post(t, c, srv.URL, `{"api_key":"`+srv.APIKey+`","totp_code":"123456"}`)
	assert.Equal(t, 200, resp.StatusCode)

	r, err := c.Get(srv.URL + "/auth/token")
	require.NoError(t, err)
	r.Body.Close()
	assert.Equal(t, 405, r.StatusCode)
	r, err = c.Get(srv.URL + "/nowhere")
	require.NoError(t, err)
	r.Body.Close()
	assert.Equal(t, 404, r.StatusCode)
}

// The server records requests but never the key or a token.
func TestServerRecordsNoSecrets(t *testing.T) {
	srv := NewUnstarted()
	c := srv.Client()
	_, out := post(t, c, srv.URL, `{"api_key":"`+srv.APIKey+`"}`)
	tok := out["access_token"].(string)
	get(t, c, srv.URL, tok)
	reqs := srv.Requests()
	require.Len(t, reqs, 2)
	assert.True(t, reqs[0].KeyOK)
	assert.Equal(t, []string{"api_key"}, reqs[0].Fields)
	assert.Equal(t, "/users/me", reqs[1].Path)
	assert.Equal(t, 200, reqs[1].Status)
	dump := fmt.Sprintf("%#v", reqs)
	assert.NotContains(t, dump, srv.APIKey)
	assert.NotContains(t, dump, tok)
	assert.NotContains(t, srv.String(), srv.APIKey)
}

func TestServerLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewUnstarted()
		srv.SetLatency(3 * time.Second)
		start := time.Now()
		post(t, srv.Client(), srv.URL, `{"api_key":"`+srv.APIKey+`"}`)
		assert.Equal(t, 3*time.Second, time.Since(start))
		start = time.Now()
		get(t, srv.Client(), srv.URL, "")
		assert.Zero(t, time.Since(start), "the API itself is not slowed")
	})
}

// WithRateLimit: n answers per address and rolling hour, 429s included;
// scripted outages are not counted; Retry-After is the wait for a slot.
func TestServerRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewUnstarted(WithRateLimit(3))
		c := srv.Client()
		srv.FailNext(5, http.StatusBadGateway, 0)
		for range 5 {
			resp, _ := post(t, c, srv.URL, `{"api_key":"`+srv.APIKey+`"}`)
			assert.Equal(t, 502, resp.StatusCode, "a proxy's answer, not counted")
		}
		start := time.Now()
		for i := range 3 {
			resp, _ := post(t, c, srv.URL, `{"api_key":"col_wrong"}`)
			assert.Equal(t, 401, resp.StatusCode, "answer %d: failed authentications count too", i)
			time.Sleep(10 * time.Minute)
		}
		resp, out := post(t, c, srv.URL, `{"api_key":"`+srv.APIKey+`"}`)
		require.Equal(t, 429, resp.StatusCode)
		assert.Equal(t, "RATE_LIMITED", out["detail"].(map[string]any)["code"])
		assert.Equal(t, "2400", resp.Header.Get("Retry-After"), "the 429 counts too: until two answers are an hour old")
		assert.Equal(t, 1, srv.RateLimited())

		time.Sleep(time.Until(start.Add(time.Hour)))
		resp, _ = post(t, c, srv.URL, `{"api_key":"`+srv.APIKey+`"}`)
		assert.Equal(t, 429, resp.StatusCode, "the 429 counted: the penalty is extended")
		time.Sleep(time.Hour)
		resp, _ = post(t, c, srv.URL, `{"api_key":"`+srv.NewKey()+`"}`)
		assert.Equal(t, 200, resp.StatusCode, "a key from NewKey is accepted")
		assert.Equal(t, 2, srv.RateLimited())
	})
}

// RequireTOTP: a code is accepted once per 30 s window, as on the Colony.
func TestServerTOTPOncePerWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := NewUnstarted()
		srv.RequireTOTP("123456")
		c := srv.Client()
		body := `{"api_key":"` + srv.APIKey + `","totp_code":"123456"}`
		time.Sleep(time.Duration(30-time.Now().Unix()%30) * time.Second) // the start of a window
		resp, _ := post(t, c, srv.URL, body)
		assert.Equal(t, 200, resp.StatusCode)
		resp, out := post(t, c, srv.URL, body)
		assert.Equal(t, 401, resp.StatusCode, "replayed in the same window")
		assert.Equal(t, "AUTH_2FA_INVALID", out["detail"].(map[string]any)["code"])
		time.Sleep(30 * time.Second)
		resp, _ = post(t, c, srv.URL, body)
		assert.Equal(t, 200, resp.StatusCode, "the next window")
	})
}
