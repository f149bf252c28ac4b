package colonyauth

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"
)

// apiFake issues tokens tok1, tok2, … and serves an API that rejects every
// token but the newest with 401 and echoes request bodies.
type apiFake struct {
	mu        sync.Mutex
	issued    int
	exchanges int
	api       []string // "METHOD path body auth" of each API request
	status    int      // if set, the API answers this instead
}

func (f *apiFake) client() *http.Client {
	return handlerClient(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/auth/token") {
			f.exchanges++
			f.issued++
			answer(w, 200, `{"access_token":"tok`+string(rune('0'+f.issued))+`"}`)
			return
		}
		body, _ := io.ReadAll(r.Body)
		auth := r.Header.Get("Authorization")
		f.api = append(f.api, r.Method+" "+r.URL.Path+" "+string(body)+" "+auth)
		switch {
		case len(f.api) > 20: // a client that retries without end fails the test instead of hanging it
			answer(w, 200, `{"detail":"too many requests from a test client"}`)
		case f.status != 0:
			answer(w, f.status, `{"detail":"upstream"}`)
		case auth != "Bearer tok"+string(rune('0'+f.issued)):
			answer(w, 401, `{"detail":"Token revoked"}`)
		default:
			answer(w, 200, `{"body":`+string(body)+`}`)
		}
	})
}

func (f *apiFake) newClient(t *testing.T) (*http.Client, *TokenSource) {
	hc := f.client()
	s := New(testKey, WithHTTPClient(hc))
	return NewClient(context.WithValue(background, oauth2.HTTPClient, hc), s), s
}

const apiURL = DefaultBaseURL + "/users/me"

// B11: a revoked token costs one refresh and the request still succeeds.
func TestNewClientRefreshesAfter401(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		client := NewClient(context.WithValue(background, oauth2.HTTPClient, srv.Client()), s)
		get := func() int {
			resp, err := client.Get(srv.URL + "/users/me")
			require.NoError(t, err)
			resp.Body.Close()
			return resp.StatusCode
		}
		require.Equal(t, 200, get())
		srv.RevokeAll()
		require.Equal(t, 200, get())
		assert.Equal(t, 2, srv.Exchanges())
		var statuses []int
		for _, r := range srv.Requests() {
			if r.Path == "/users/me" {
				statuses = append(statuses, r.Status)
			}
		}
		assert.Equal(t, []int{200, 401, 200}, statuses)
	})
}

// B11: a POST whose body can be replayed is sent again with the same body;
// the caller's request is not modified.
func TestNewClientReplaysBody(t *testing.T) {
	f := &apiFake{}
	client, s := f.newClient(t)
	mustToken(t, s)
	f.issued++ // the server moved on: tok1 is now rejected

	req, err := http.NewRequest(http.MethodPost, DefaultBaseURL+"/posts", strings.NewReader(`{"n":1}`))
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.JSONEq(t, `{"body":{"n":1}}`, string(body))
	assert.Equal(t, []string{
		`POST /api/v1/posts {"n":1} Bearer tok1`,
		`POST /api/v1/posts {"n":1} Bearer tok3`,
	}, f.api)
	assert.Empty(t, req.Header.Get("Authorization"), "the caller's request is untouched")
}

// B11: a body that cannot be replayed gets the 401 back, with no new token.
func TestNewClientNoReplayWithoutGetBody(t *testing.T) {
	f := &apiFake{}
	client, s := f.newClient(t)
	mustToken(t, s)
	f.issued++

	req, err := http.NewRequest(http.MethodPost, DefaultBaseURL+"/posts", io.NopCloser(strings.NewReader(`{"n":1}`)))
	require.NoError(t, err)
	require.Nil(t, req.GetBody)
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 401, resp.StatusCode)
	assert.Len(t, f.api, 1)
	assert.Equal(t, 1, f.exchanges)
}

// B11: API errors are passed back as they are: a 5xx after one request, a
// 401 that a new token does not cure after one retry (and one exchange).
func TestNewClientRetryLimits(t *testing.T) {
	for _, c := range []struct{ status, requests, exchanges int }{
		{http.StatusBadGateway, 1, 1},
		{http.StatusServiceUnavailable, 1, 1},
		{http.StatusUnauthorized, 2, 2},
	} {
		f := &apiFake{status: c.status}
		client, _ := f.newClient(t)
		resp, err := client.Get(apiURL)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, c.status, resp.StatusCode)
		assert.Len(t, f.api, c.requests, "API requests for a %d", c.status)
		assert.Equal(t, c.exchanges, f.exchanges, "exchanges for a %d", c.status)
	}
}

// B11: each request's context bounds its wait for a token during an outage.
func TestNewClientRequestDeadline(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		srv.Down(http.StatusBadGateway)
		client := NewClient(context.WithValue(background, oauth2.HTTPClient, srv.Client()), s)
		ctx, cancel := context.WithTimeout(background, 3*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/users/me", nil)
		start := time.Now()
		_, err := client.Do(req)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 3*time.Second, time.Since(start))
		srv.Up()
		resp, err := client.Get(srv.URL + "/users/me") // joins the running exchange
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode)
	})
}

// B11: the context's oauth2.HTTPClient supplies transport, jar and timeout.
func TestNewClientUsesContextClient(t *testing.T) {
	var via []string
	base := &http.Client{Timeout: 7 * time.Second, Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		via = append(via, r.URL.Path)
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{"access_token":"t"}`)), Request: r}, nil
	})}
	s := New(testKey, WithHTTPClient(base))
	client := NewClient(context.WithValue(background, oauth2.HTTPClient, base), s)
	assert.Equal(t, 7*time.Second, client.Timeout)
	resp, err := client.Get(apiURL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, []string{"/api/v1/auth/token", "/api/v1/users/me"}, via)

	_, err = NewClient(background, New("")).Get(apiURL)
	require.ErrorIs(t, err, ErrInvalidKey, "a token error is the request's error")
}
