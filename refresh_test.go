package colonyauth

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// fakeJWT returns an unsigned JWT whose payload is claims.
func fakeJWT(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(claims)) + ".sig"
}

// B6: expiry from the JWT exp, else expires_in, else 23 h; Expiry is the
// half-life, when the source wants to be asked again.
func TestExpirySources(t *testing.T) {
	bubble(t, func(t *testing.T) {
		now := time.Now()
		cases := []struct {
			name string
			body string
			life time.Duration
		}{
			{"JWT exp", fmt.Sprintf(`{"access_token":%q,"expires_in":60}`, fakeJWT(fmt.Sprintf(`{"exp":%d}`, now.Add(24*time.Hour).Unix()))), 24 * time.Hour},
			{"expires_in", `{"access_token":"opaque","expires_in":3600}`, time.Hour},
			{"expires_in as string", `{"access_token":"opaque","expires_in":"3600"}`, time.Hour},
			{"nothing", `{"access_token":"opaque"}`, 23 * time.Hour},
			{"JWT exp already past", fmt.Sprintf(`{"access_token":%q,"expires_in":7200}`, fakeJWT(fmt.Sprintf(`{"exp":%d}`, now.Add(-time.Hour).Unix()))), 2 * time.Hour},
			{"JWT without exp", fmt.Sprintf(`{"access_token":%q}`, fakeJWT(`{"sub":"x"}`)), 23 * time.Hour},
			{"negative expires_in", `{"access_token":"opaque","expires_in":-1}`, 23 * time.Hour},
			{"huge expires_in", `{"access_token":"opaque","expires_in":1000000000000}`, 23 * time.Hour},
			{"JWT exp 367 days away", fmt.Sprintf(`{"access_token":%q,"expires_in":7200}`, fakeJWT(fmt.Sprintf(`{"exp":%d}`, now.Add(367*24*time.Hour).Unix()))), 2 * time.Hour},
			{"JWT exp 365 days away", fmt.Sprintf(`{"access_token":%q}`, fakeJWT(fmt.Sprintf(`{"exp":%d}`, now.Add(365*24*time.Hour).Unix()))), 365 * 24 * time.Hour},
		}
		for _, c := range cases {
			hc := handlerClient(func(w http.ResponseWriter, r *http.Request) { answer(w, 200, c.body) })
			tok := mustToken(t, New(testKey, WithHTTPClient(hc)))
			assert.Equal(t, refreshAt(tok, now, c.life), tok.Expiry, c.name)
		}
	})
}

// B6: a 24 h token is reused until its refresh point (40–60 % of its life,
// drawn from the token); after that a new one arrives without any caller
// waiting for it.
func TestRefreshAtRefreshPoint(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		start := time.Now()
		first := mustToken(t, s)
		point := refreshAt(first, start, 24*time.Hour)
		assert.Equal(t, point, first.Expiry)
		assert.True(t, !point.Before(start.Add(9*time.Hour+36*time.Minute)) && !point.After(start.Add(14*time.Hour+24*time.Minute)), "in 40–60 %% of 24 h: %v", point.Sub(start))

		time.Sleep(point.Sub(start) - time.Minute)
		assert.Same(t, first, mustToken(t, s))
		assert.Equal(t, 1, srv.Exchanges())

		time.Sleep(time.Minute)
		assert.Equal(t, first.AccessToken, mustToken(t, s).AccessToken, "past the refresh point the valid token is served while refreshing")
		synctest.Wait()
		second := mustToken(t, s)
		assert.NotEqual(t, first.AccessToken, second.AccessToken)
		assert.Equal(t, 2, srv.Exchanges())
		exp, _, _ := jwtClaims(second.AccessToken) // whole seconds
		assert.Equal(t, refreshAt(second, time.Now(), time.Until(exp)), second.Expiry)
	})
}

// B6: the refresh point is drawn per token in [40 %, 60 %] of its life, the
// same for the same token, spread over the range for a fleet.
func TestRefreshPointSpread(t *testing.T) {
	life := 24 * time.Hour
	var lo, hi time.Duration = life, 0
	for i := range 1000 {
		access := fakeJWT(fmt.Sprintf(`{"exp":%d,"sub":"agent-%d"}`, 1700000000+i, i))
		d := refreshAfter(access, life)
		require.Equal(t, d, refreshAfter(access, life), "deterministic")
		require.True(t, d >= life*4/10 && d <= life*6/10, "%v", d)
		lo, hi = min(lo, d), max(hi, d)
	}
	assert.Less(t, lo, life*41/100, "spread to the bottom of the range")
	assert.Greater(t, hi, life*59/100, "spread to the top of the range")
}

// outageRun calls get every 10 s from +12 h to +23 h while /auth/token
// answers 502 (slowly), then brings it back and calls until a new token
// arrives. It checks that no call failed or waited, and returns the times
// of the exchanges sent during the outage and the delay to the new token.
func outageRun(t *testing.T, srv *colonyauthtest.Server, start time.Time, get func() string) (attempts []time.Time, recovery time.Duration) {
	t.Helper()
	first := get()
	time.Sleep(12 * time.Hour)
	srv.Down(http.StatusBadGateway)
	srv.SetLatency(20 * time.Second) // a slow failing endpoint must not slow the callers either
	for time.Since(start) < 23*time.Hour {
		before := time.Now()
		require.Equal(t, first, get(), "at +%v", time.Since(start))
		require.Zero(t, time.Since(before), "a call waited at +%v", time.Since(start))
		time.Sleep(10 * time.Second)
	}
	for _, r := range srv.Requests() {
		if r.Path == "/auth/token" && r.Time.After(start.Add(12*time.Hour-time.Minute)) {
			attempts = append(attempts, r.Time)
		}
	}
	srv.Up()
	up := time.Now()
	for get() == first {
		time.Sleep(10 * time.Second)
	}
	return attempts, time.Since(up)
}

// checkStaleAttempts asserts B7's bounds: at most 15 exchanges in any hour,
// none more than 10 minutes apart.
func checkStaleAttempts(t *testing.T, attempts []time.Time) {
	t.Helper()
	require.NotEmpty(t, attempts)
	for i, a := range attempts {
		if i > 0 {
			assert.LessOrEqual(t, a.Sub(attempts[i-1]), 10*time.Minute, "gap before attempt %d", i)
		}
		inHour := 0
		for _, b := range attempts[i:] {
			if b.Sub(a) < time.Hour {
				inHour++
			}
		}
		assert.LessOrEqual(t, inHour, 15, "attempts in the hour from %v", a)
	}
}

// B7: during an 11-hour outage after half-life every call gets the old
// token at once; attempts stay within bounds; the new token arrives within
// 10 minutes of recovery, long before exp.
func TestServeStaleDuringOutage(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		start := time.Now()
		attempts, recovery := outageRun(t, srv, start, func() string { return mustToken(t, s).AccessToken })
		checkStaleAttempts(t, attempts)
		t.Logf("%d attempts in 11 h of outage; new token %v after recovery", len(attempts), recovery)
		assert.LessOrEqual(t, recovery, 10*time.Minute)
		assert.Less(t, time.Since(start), 24*time.Hour)
	})
}

// B7 through oauth2.NewClient (ReuseTokenSource in front): every API call
// during the outage succeeds.
func TestServeStaleThroughOAuth2NewClient(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		client := oauth2.NewClient(context.WithValue(background, oauth2.HTTPClient, srv.Client()), s)
		calls := 0
		get := func() string {
			resp, err := client.Get(srv.URL + "/users/me")
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			calls++
			return resp.Request.Header.Get("Authorization")
		}
		start := time.Now()
		attempts, recovery := outageRun(t, srv, start, get)
		checkStaleAttempts(t, attempts)
		assert.LessOrEqual(t, recovery, 10*time.Minute)
		assert.Greater(t, calls, 3900)
	})
}

// B2+B8: with an expired token and /auth/token down, a caller waits the
// whole budget once; the next calls fail at once without a request.
func TestExpiredTokenDuringOutage(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		mustToken(t, s)
		time.Sleep(24 * time.Hour)
		srv.Down(http.StatusBadGateway)
		start := time.Now()
		_, err := s.Token()
		require.ErrorIs(t, err, ErrUnavailable)
		assert.Equal(t, 122*time.Second, time.Since(start))
		assert.Equal(t, 1+7, srv.Exchanges())
		assert.Equal(t, 30*time.Second, asError(t, err).RetryAfter, "the cool-down is reported")

		for range 100 {
			_, err := s.Token()
			require.ErrorIs(t, err, ErrUnavailable)
			assert.Equal(t, 7, asError(t, err).Attempts, "the same error as the exchange's")
		}
		assert.Equal(t, 1+7, srv.Exchanges())
		assert.Zero(t, time.Since(start)-122*time.Second, "remembered errors take no time")
	})
}

// B8: a 429 with Retry-After: 120 stops all requests for 120 s.
func TestRateLimitRemembered(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		srv.FailNext(1, http.StatusTooManyRequests, 120*time.Second)
		start := time.Now()
		_, err := s.Token()
		require.ErrorIs(t, err, ErrRateLimited)
		assert.Equal(t, 120*time.Second, asError(t, err).RetryAfter)
		for time.Since(start) < 120*time.Second {
			_, err := s.Token()
			require.ErrorIs(t, err, ErrRateLimited)
			assert.Equal(t, 120*time.Second-time.Since(start), asError(t, err).RetryAfter)
			time.Sleep(time.Second)
		}
		assert.Equal(t, 1, srv.Exchanges())
		mustToken(t, s)
		assert.Equal(t, 2, srv.Exchanges())
	})
}

// B8: a bad key called 1000 times over 29 s costs one exchange.
func TestBadKeyRemembered(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		s := New("col_wrong", WithBaseURL(srv.URL), WithHTTPClient(srv.Client()))
		start := time.Now()
		for range 1000 {
			_, err := s.Token()
			require.ErrorIs(t, err, ErrInvalidKey)
			time.Sleep(29 * time.Millisecond)
		}
		assert.Equal(t, 29*time.Second, time.Since(start))
		assert.Equal(t, 1, srv.Exchanges())
		time.Sleep(time.Second)
		_, err := s.Token()
		require.ErrorIs(t, err, ErrInvalidKey)
		assert.Equal(t, 2, srv.Exchanges(), "after the 30 s cool-down the key is tried again")
	})
}

// timerClock is a mock clock that reports each timer the source starts,
// so a test outside a synctest bubble knows when to advance it.
type timerClock struct {
	*clock.Mock
	started chan time.Duration
}

func (c *timerClock) Timer(d time.Duration) *clock.Timer {
	t := c.Mock.Timer(d)
	c.started <- d
	return t
}

// B8: the queue that oauth2.ReuseTokenSource forms during an outage runs
// the budget once, not once per queued request. (ReuseTokenSource holds a
// sync.Mutex while it waits, which a synctest bubble cannot see through,
// so this test drives a mock clock instead.)
func TestReuseTokenSourceQueueDuringOutage(t *testing.T) {
	clk := &timerClock{Mock: clock.NewMock(), started: make(chan time.Duration)}
	srv := colonyauthtest.NewUnstarted(colonyauthtest.WithClock(clk.Mock))
	srv.Down(http.StatusBadGateway)
	s := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithClock(clk))
	reuse := oauth2.ReuseTokenSource(nil, s)
	start := clk.Now()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			_, err := reuse.Token()
			assert.ErrorIs(t, err, ErrUnavailable)
		})
	}
	var slept []time.Duration
	for range DefaultRetry().MaxRetries {
		select {
		case d := <-clk.started:
			slept = append(slept, d)
			clk.Add(d)
		case <-time.After(10 * time.Second): // a watchdog, not a measurement: fail fast instead of hanging
			t.Fatalf("the source started no timer after %v", slept)
		}
	}
	wg.Wait()
	assert.Equal(t, seconds(2, 4, 8, 16, 32, 60), slept)
	assert.Equal(t, 7, srv.Exchanges())
	assert.Equal(t, 122*time.Second, clk.Since(start))
}

// Invalidate drops the current token (and any cool-down) so the next call
// exchanges again; a foreign token changes nothing.
func TestInvalidate(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		first := mustToken(t, s)

		s.Invalidate(&oauth2.Token{AccessToken: "someone else's"})
		assert.Same(t, first, mustToken(t, s))
		assert.Equal(t, 1, srv.Exchanges())

		s.Invalidate(first)
		second := mustToken(t, s)
		assert.NotEqual(t, first.AccessToken, second.AccessToken)
		assert.Equal(t, 2, srv.Exchanges())

		// Past the refresh point a refresh meets a 429 asking for an hour:
		// the source keeps serving second and stays away...
		time.Sleep(15 * time.Hour)
		srv.FailNext(1, http.StatusTooManyRequests, time.Hour)
		stale := mustToken(t, s)
		synctest.Wait()
		assert.Equal(t, second.AccessToken, stale.AccessToken)
		assert.Equal(t, 3, srv.Exchanges())
		time.Sleep(30 * time.Minute)
		assert.Equal(t, second.AccessToken, mustToken(t, s).AccessToken)
		synctest.Wait()
		assert.Equal(t, 3, srv.Exchanges())

		// ...and when the API rejects the token, the 429 still holds: the
		// server is counting, and a request would only extend its penalty.
		s.Invalidate(stale)
		_, err := s.Token()
		require.ErrorIs(t, err, ErrRateLimited)
		assert.Equal(t, 3, srv.Exchanges())
		time.Sleep(30 * time.Minute)
		third := mustToken(t, s)
		assert.NotEqual(t, second.AccessToken, third.AccessToken)
		assert.Equal(t, 4, srv.Exchanges())
	})
}

// After exp, a failed single refresh attempt is followed by the full
// blocking exchange, not by an error.
func TestExpiryDuringStaleRefresh(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		mustToken(t, s)
		time.Sleep(24*time.Hour - 11*time.Second) // 1 s before the token is too close to exp to serve
		srv.SetLatency(5 * time.Second)
		srv.FailNext(1, http.StatusBadGateway, 0)
		stale := mustToken(t, s) // starts the single refresh attempt
		time.Sleep(2 * time.Second)
		tok := mustToken(t, s) // the token is now unusable: wait for the attempt, then exchange
		assert.NotEqual(t, stale.AccessToken, tok.AccessToken)
		assert.Equal(t, 3, srv.Exchanges())
	})
}
