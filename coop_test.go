package colonyauth

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// Cooperation is never worse than acting alone (B20, B21, B27).

// B21: a caller without a token that is not the prober waits for the
// prober's outcome, within its own deadline, sends nothing meanwhile, and
// gets its token as soon as a probe succeeds.
func TestWaitsForTheProber(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		agents := newHost(srv, 2, NewMemoryCache())
		prober, waiter := agents[0].src, agents[1].src
		srv.Down(http.StatusBadGateway)
		start := time.Now()
		go prober.Token()
		time.Sleep(time.Second)

		ctx, cancel := context.WithTimeout(background, 5*time.Second)
		defer cancel()
		_, err := waiter.TokenContext(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded, "the caller's deadline bounds its wait")
		assert.Equal(t, 6*time.Second, time.Since(start))

		go func() { time.Sleep(20*time.Second - time.Since(start)); srv.Up() }()
		tok, err := waiter.Token()
		require.NoError(t, err, "a token once a probe succeeds, not the shared error")
		assert.NotEmpty(t, tok.AccessToken)
		assert.WithinRange(t, time.Now(), start.Add(30*time.Second), start.Add(30*time.Second+pollInterval),
			"at the prober's successful attempt (0, 2, 6, 14 s fail; 30 s succeeds)")
		down := countIn(tokenRequests(srv), start, start.Add(20*time.Second))
		assert.Equal(t, 4, down, "only the prober's attempts while down")
		assert.Equal(t, 4+2, srv.Exchanges(), "then one exchange each")
	})
}

// B21, B18: a caller waits for the prober at most as long as its own B2
// schedule would have lasted (122 s from its first call); then it gets the
// error, and later calls in the same outage fail at once until the host's
// next attempt is due, which the caller then makes itself. The host sends
// the schedule of one source, whoever sends it.
func TestWaitForTheProberIsBounded(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		agents := newHost(srv, 2, NewMemoryCache())
		prober, waiter := agents[0].src, agents[1].src
		srv.Down(http.StatusBadGateway)
		start := time.Now()
		go prober.Token()
		time.Sleep(10 * time.Second)

		_, err := waiter.Token()
		require.ErrorIs(t, err, ErrUnavailable)
		assert.LessOrEqual(t, time.Since(start), 132*time.Second, "at most 122 s after its first call")
		assert.GreaterOrEqual(t, time.Since(start), 122*time.Second, "not before the host's schedule is spent")
		times := tokenRequests(srv)
		assert.Len(t, times, 7, "one schedule for the host: 0, 2, 6, 14, 30, 62, 122 s")

		// The schedule ended at 122 s; the host's next single attempt is
		// due at 152 s.
		before := time.Now()
		_, err = waiter.Token()
		require.ErrorIs(t, err, ErrUnavailable)
		assert.Equal(t, before, time.Now(), "later calls fail at once")
		assert.Equal(t, start.Add(152*time.Second).Sub(before), asError(t, err).RetryAfter, "until the host's next attempt")
		time.Sleep(asError(t, err).RetryAfter)
		_, err = waiter.Token()
		require.ErrorIs(t, err, ErrUnavailable)
		assert.Equal(t, 8, srv.Exchanges(), "the waiter made the single attempt that was due")
		assert.Equal(t, 1, asError(t, err).Attempts)
		before = time.Now()
		_, err = waiter.Token()
		require.ErrorIs(t, err, ErrUnavailable)
		assert.Equal(t, before, time.Now(), "and fails at once until the next one")
	})
}

// B20: an early refresh (more than 2 h left) leaves the slot to a source
// without a token, or with a token that expires sooner, that waits for one.
func TestEarlyRefreshYieldsToMoreUrgentNeeds(t *testing.T) {
	now := time.Date(2026, 5, 21, 12, 0, 0, 0, time.UTC)
	early := need{owner: "e", key: "early", stale: true, early: true, exp: now.Add(6 * time.Hour), limit: 30, retry: DefaultRetry()}
	for _, c := range []struct {
		name  string
		other keyRecord
		act   int
	}{
		{"nobody waits", keyRecord{}, send},
		{"a source without a token waits", keyRecord{Want: ms(now.Add(time.Minute))}, deny},
		{"a token that expires sooner waits", keyRecord{Want: ms(now.Add(time.Minute)), Exp: ms(now.Add(5 * time.Hour))}, deny},
		{"a token that expires later waits", keyRecord{Want: ms(now.Add(time.Minute)), Exp: ms(now.Add(7 * time.Hour))}, send},
		{"a need that has lapsed", keyRecord{Want: ms(now.Add(-time.Second))}, send},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := &hostRecord{OK: ms(now.Add(-10 * time.Second)), Keys: map[string]*keyRecord{"other": &c.other}}
			for i := range 5 {
				h.Slots = append(h.Slots, ms(now.Add(-time.Duration(i+1)*time.Minute)))
			}
			v := h.gate(early, now, 5*time.Minute)
			assert.Equal(t, c.act, v.act)
			if c.act == deny {
				assert.Greater(t, h.Keys["early"].Want, ms(now), "the refused early refresh records its own need")
			}
		})
	}

	// A source without a token, refused because the hour is spent, records
	// its need until a slot frees, so that early refreshes then yield.
	h := &hostRecord{OK: ms(now.Add(-10 * time.Second))}
	for i := range 30 {
		h.Slots = append(h.Slots, ms(now.Add(-time.Duration(59-i)*time.Minute)))
	}
	v := h.gate(need{owner: "n", key: "none", limit: 30, retry: DefaultRetry()}, now, 5*time.Minute)
	require.Equal(t, deny, v.act)
	assert.GreaterOrEqual(t, h.Keys["none"].Want, ms(v.until), "the need lasts past the refusal")
}

// B27: an API that rejects every token costs a few exchanges an hour, not
// one per request: the first Invalidate exchanges at once, then the next
// exchange waits a minute after the last, doubling up to 10 minutes.
func TestRejectedTokensBackOff(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		api := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
			if r.URL.Path == "/api/v1/auth/token" {
				return srv.Transport().RoundTrip(r)
			}
			return &http.Response{StatusCode: 401, Status: "401 Unauthorized", Header: http.Header{}, Body: http.NoBody, Request: r}, nil
		})}
		s := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()))
		client := NewClient(context.WithValue(background, oauth2.HTTPClient, api), s)
		get := func() {
			resp, err := client.Get(srv.URL + "/users/me")
			if err == nil {
				resp.Body.Close()
			}
		}
		get()
		assert.Equal(t, 2, srv.Exchanges(), "the first Invalidate exchanges at once")
		start := time.Now()
		for range 200 {
			get()
			time.Sleep(18 * time.Second)
		}
		took := time.Since(start)
		times := tokenRequests(srv)
		var gaps []time.Duration
		for i := 2; i < len(times) && i < 7; i++ {
			gaps = append(gaps, times[i].Sub(times[i-1]).Round(time.Second))
		}
		t.Logf("%d exchanges for 201 requests in %v; gaps %v", srv.Exchanges(), took.Round(time.Minute), gaps)
		assert.LessOrEqual(t, srv.Exchanges(), 2+int(took/(10*time.Minute))+5, "a few exchanges an hour")
		require.Len(t, gaps, 5)
		for i := 1; i < len(gaps); i++ {
			assert.GreaterOrEqual(t, gaps[i], gaps[i-1], "the waits grow: %v", gaps)
		}
		assert.GreaterOrEqual(t, gaps[len(gaps)-1], 8*time.Minute, "doubling towards 10 minutes: %v", gaps)
		assert.Equal(t, 1, maxPerMinute(times[2:]), "never two exchanges within a minute after the first retry")
	})
}

// B27 on a host: one agent whose API rejects every token does not spend the
// host's hour; the other agents still get theirs.
func TestRejectingAPIDoesNotSpendTheHour(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted(colonyauthtest.WithRateLimit(30))
		dir := t.TempDir()
		host := func(key string) *TokenSource {
			return New(key, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithFileCache(dir))
		}
		bad := host(srv.NewKey())
		stop := time.Now().Add(time.Hour)
		go func() {
			for time.Now().Before(stop) {
				if tok, err := bad.Token(); err == nil {
					bad.Invalidate(tok) // the API answered 401
				}
				time.Sleep(time.Second)
			}
		}()
		time.Sleep(30 * time.Minute)
		spent := srv.Exchanges()
		for i := range 20 {
			_, err := host(srv.NewKey()).Token()
			require.NoError(t, err, "agent %d after half an hour", i)
		}
		t.Logf("the rejected agent made %d exchanges in 30 minutes", spent)
		assert.LessOrEqual(t, spent, 8, "a few, not the host's 30")
		time.Sleep(time.Until(stop))
	})
}

// maxPerMinute is the most times in any rolling minute.
func maxPerMinute(times []time.Time) int {
	most := 0
	for i := range times {
		n := 0
		for _, t := range times[i:] {
			if t.Sub(times[i]) < time.Minute {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

// Losing coordination is visible: a source that cannot use the shared
// directory says so once at Warn, with the reason and what to do, and
// Alone reports it (issue: cooperation never worse than alone, item 4).
func TestLostCoordinationIsVisible(t *testing.T) {
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.Chmod(dir, 0o770))
		var logs logBuffer
		srv, s := newFake(t, WithFileCache(dir), WithLogger(logs.logger()))
		assert.NoError(t, s.Alone(), "nothing known before the first exchange")
		mustToken(t, s)
		time.Sleep(time.Minute)
		s.Invalidate(mustToken(t, s))
		mustToken(t, s)
		assert.Equal(t, 2, srv.Exchanges(), "it works, alone")
		assert.Equal(t, 1, countLines(logs.String(), "level=WARN"), "said once: %s", logs.String())
		assert.Contains(t, logs.String(), "acting alone")
		assert.Contains(t, logs.String(), "chmod 700 "+dir, "what to do")
		require.Error(t, s.Alone())
		assert.Contains(t, s.Alone().Error(), "group- or world-writable")

		require.NoError(t, os.Chmod(dir, 0o700))
		time.Sleep(time.Minute)
		s.Invalidate(mustToken(t, s))
		mustToken(t, s)
		assert.NoError(t, s.Alone(), "coordinating again")
		assert.Contains(t, logs.String(), "works again")
	})
}

// fakeAged is a JWT issued age ago that lives 24 h.
func fakeAged(now time.Time, age time.Duration, n int) (string, time.Time) {
	iat := now.Add(-age)
	exp := iat.Add(24 * time.Hour)
	return fakeJWT(fmt.Sprintf(`{"iat":%d,"exp":%d,"n":%d}`, iat.Unix(), exp.Unix(), n)), exp
}
