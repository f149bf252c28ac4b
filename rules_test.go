package colonyauth

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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

// The fleet and hardening rules, each pinned by a test that fails (fast)
// when the rule is broken: built from DESIGN.md's numbers, not from the
// constants that implement them.

// startTimes records when each /auth/token request starts (the fake
// records its requests when they end).
type startTimes struct {
	mu    sync.Mutex
	times []time.Time
}

func (s *startTimes) client(srv *colonyauthtest.Server) *http.Client {
	return &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		s.mu.Lock()
		s.times = append(s.times, time.Now())
		s.mu.Unlock()
		return srv.Transport().RoundTrip(r)
	})}
}

func (s *startTimes) in(from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return countIn(s.times, from, to)
}

// B21: the prober's lease outlasts a slow attempt: while the prober's
// first attempt takes 20 s (no answer yet, so nobody knows the endpoint is
// down), a second source waits and starts no parallel probe.
func TestSlowProbeIsNotDoubled(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		srv.Down(http.StatusBadGateway)
		srv.SetLatency(20 * time.Second)
		var starts startTimes
		shared := NewMemoryCache()
		ctx, cancel := context.WithCancel(background)
		a := New(srv.NewKey(), WithBaseURL(srv.URL), WithHTTPClient(starts.client(srv)), WithCache(shared), WithContext(ctx))
		b := New(srv.NewKey(), WithBaseURL(srv.URL), WithHTTPClient(starts.client(srv)), WithCache(shared), WithContext(ctx))
		start := time.Now()
		go a.Token()
		time.Sleep(time.Second)
		wait, stop := context.WithTimeout(background, 25*time.Second)
		defer stop()
		b.TokenContext(wait)
		assert.Equal(t, 1, starts.in(start, start.Add(20*time.Second)), "one probe while the first is in flight")
		cancel()
		time.Sleep(time.Minute) // the fake's latency ends; the flights see ctx
	})
}

// B20: a refresh of a token with less than 2 hours left is urgent: it may
// take a slot past two thirds of the hour; one with more than 2 hours left
// may not. (A 2.5 h token asks at 40–60 % of its life: 1–1.5 h left.)
func TestUrgentRefreshUsesTheLastSlots(t *testing.T) {
	for _, c := range []struct {
		life   time.Duration
		urgent bool
	}{{150 * time.Minute, true}, {10 * time.Hour, false}} {
		t.Run(c.life.String(), func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				srv := colonyauthtest.NewUnstarted(colonyauthtest.WithLifetime(c.life))
				agents := newHost(srv, 3, NewMemoryCache(), WithHostLimit(3))
				tok := mustToken(t, agents[0].src)
				require.NotNil(t, tok)
				time.Sleep(time.Until(tok.Expiry) - 2*time.Minute)
				mustToken(t, agents[1].src)
				mustToken(t, agents[2].src) // 2 of 3 slots used within the hour
				time.Sleep(2 * time.Minute)
				mustToken(t, agents[0].src) // past its refresh point: served, refresh in the background
				time.Sleep(time.Second)
				refreshed := srv.Exchanges() == 4
				assert.Equal(t, c.urgent, refreshed, "left %v", time.Until(tok.Extra("expires_at").(time.Time)).Round(time.Minute))
			})
		})
	}
}

// B21, B23: during an outage at most 30 single attempts go in any rolling
// hour, last chances included, whenever they come (here right after the
// budget is spent); with 29, one more may go.
func TestSingleAttemptsAtMost30AnHour(t *testing.T) {
	now := time.Date(2026, 5, 21, 12, 0, 0, 0, time.UTC)
	for _, tries := range []int{8, 40} {
		h := &hostRecord{Down: ms(now.Add(-time.Hour)), Tries: tries, Last: ms(now.Add(-100 * time.Second))}
		for i := range 30 {
			h.Singles = append(h.Singles, ms(now.Add(-59*time.Minute+time.Duration(i)*time.Minute)))
		}
		n := need{owner: "a", key: "k", stale: true, exp: now.Add(10 * time.Second), retry: DefaultRetry()}
		v := h.gate(n, now, 5*time.Minute)
		assert.Equal(t, deny, v.act, "tries %d: the 31st in the hour", tries)
		assert.Equal(t, time.Minute, v.until.Sub(now), "tries %d: when the oldest leaves the hour", tries)
		h.Singles = h.Singles[1:]
		assert.Equal(t, send, h.gate(n, now, 5*time.Minute).act, "tries %d: the 30th", tries)
	}
}

// B21, B23: while a source without a token probes every 2 minutes, a valid
// token about to expire still gets its last chance just before it would
// go (the no-token cadence leaves room in the hour's 30), and is refreshed
// when the endpoint is back by then.
func TestLastChanceFitsWhileAnotherProbes(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted(colonyauthtest.WithLifetime(3 * time.Hour))
		shared := NewMemoryCache()
		agents := newHost(srv, 2, shared)
		valid := agents[0].src
		tok := mustToken(t, valid)
		exp := tok.Extra("expires_at").(time.Time)
		srv.Down(http.StatusBadGateway)
		// The endpoint is down from now until just before the token would go.
		up := exp.Add(-time.Minute)
		go func() { time.Sleep(time.Until(up)); srv.Up() }()
		var failed int
		end := exp.Add(time.Minute)
		var wg sync.WaitGroup
		wg.Go(func() {
			for time.Now().Before(end) {
				agents[1].src.Token() // without a token: probes every 2 minutes after its budget
				time.Sleep(10 * time.Second)
			}
		})
		wg.Go(func() {
			for time.Now().Before(end) {
				if _, err := valid.Token(); err != nil {
					failed++
				}
				time.Sleep(10 * time.Second)
			}
		})
		wg.Wait()
		assert.Zero(t, failed, "the valid token's last chance came after recovery and saved it")
		times := tokenRequests(srv)[1:] // the outage's
		var later []time.Time
		for _, q := range times {
			if q.Sub(times[0]) >= time.Hour {
				later = append(later, q)
			}
		}
		assert.LessOrEqual(t, countIn(times, times[0], times[0].Add(time.Hour)), 40, "≤ 40 in the outage's first hour")
		assert.LessOrEqual(t, maxPerHour(later), 30, "≤ 30 in any later hour")
	})
}

// B20: when room frees for a refused source, RetryAfter names when the
// right slot leaves the hour: for an early refresh, when fewer than two
// thirds are used; for a source without a token held back by the
// reservation for tokens about to expire, when a slot beyond the reserved
// ones frees; for a spent hour, when the oldest leaves.
func TestRefusalsSayWhenRoomFrees(t *testing.T) {
	now := time.Date(2026, 5, 21, 12, 0, 0, 0, time.UTC)
	slots := func(n int) []int64 {
		var out []int64
		for i := range n { // i minutes old, the oldest 50 minutes
			out = append(out, ms(now.Add(-time.Duration(50-i)*time.Minute)))
		}
		return out
	}
	leaves := func(minutesOld int) time.Time { return now.Add(-time.Duration(minutesOld) * time.Minute).Add(slotLife) }

	// An early refresh with 22 of 30 used: it may go once 19 are left.
	h := &hostRecord{OK: ms(now), Slots: slots(22)}
	v := h.gate(need{owner: "e", key: "e", stale: true, early: true, exp: now.Add(10 * time.Hour), limit: 30, retry: DefaultRetry()}, now, 5*time.Minute)
	require.Equal(t, deny, v.act)
	assert.Equal(t, leaves(48).Sub(now), v.until.Sub(now), "when the third-oldest leaves: 19 remain")

	// No token, 28 used, 2 other keys' tokens expire within 2 h: the last
	// two slots are theirs; this source may go when 27 remain.
	h = &hostRecord{OK: ms(now), Slots: slots(28), Keys: map[string]*keyRecord{
		"x": {Exp: ms(now.Add(time.Hour))}, "y": {Exp: ms(now.Add(90 * time.Minute))}}}
	v = h.gate(need{owner: "n", key: "n", limit: 30, retry: DefaultRetry()}, now, 5*time.Minute)
	require.Equal(t, deny, v.act)
	assert.ErrorIs(t, v.err, ErrRateLimited)
	assert.Contains(t, v.err.Message, "kept for tokens about to expire")
	assert.Equal(t, leaves(50).Sub(now), v.until.Sub(now), "when the oldest leaves: 27 remain")
	assert.Equal(t, roundUp(leaves(50).Sub(now)), v.err.RetryAfter)

	// A spent hour: when the oldest leaves.
	h = &hostRecord{OK: ms(now), Slots: slots(30)}
	v = h.gate(need{owner: "n", key: "n", limit: 30, retry: DefaultRetry()}, now, 5*time.Minute)
	require.Equal(t, deny, v.act)
	assert.Equal(t, leaves(50).Sub(now), v.until.Sub(now))
}

// B20: a source without a token competing at the limit with another key's
// token that expires within 2 hours leaves it the last slot, then takes
// the one after.
func TestNoTokenLeavesTheLastSlotToExpiringTokens(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted(colonyauthtest.WithLifetime(150 * time.Minute))
		agents := newHost(srv, 3, NewMemoryCache(), WithHostLimit(2))
		expiring := agents[0].src
		tok := mustToken(t, expiring)
		time.Sleep(time.Until(tok.Expiry) + time.Second) // past its refresh point, 1–1.5 h left
		mustToken(t, agents[2].src)                      // 1 of 2 slots used within the hour
		srv.Down(http.StatusBadGateway)
		mustToken(t, expiring) // its refresh fails: it waits, recorded in the host record
		synctest.Wait()
		srv.Up()
		_, err := agents[1].src.Token() // the last slot is kept for the expiring token
		require.ErrorIs(t, err, ErrRateLimited)
		assert.Contains(t, err.Error(), "kept for tokens about to expire")
	})
}

// B21: last chances count against the 30 single attempts an hour from the
// outage's start (covered with tries 8 in TestSingleAttemptsAtMost30AnHour).

// B8, B27: Invalidate bypasses the key's remembered failure in the shared
// record: another source's 401 for the same key does not keep this one,
// whose valid token the API just rejected, from exchanging at once.
func TestInvalidateBypassesSharedFailure(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		shared := NewMemoryCache()
		b := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithCache(shared))
		tok := mustToken(t, b)
		time.Sleep(2 * time.Minute)
		// Another source of the key, sharing the record, gets a 401.
		c := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithCache(&noTokens{shared}))
		srv.FailNext(1, http.StatusUnauthorized, 0)
		_, err := c.Token()
		require.ErrorIs(t, err, ErrInvalidKey)
		b.Invalidate(tok)
		fresh, err := b.Token()
		require.NoError(t, err, "Invalidate exchanges at once")
		assert.NotEqual(t, tok.AccessToken, fresh.AccessToken)
		assert.Equal(t, 3, srv.Exchanges())
	})
}

// noTokens is a Cache that shares a Ledger but no tokens.
type noTokens struct{ Cache }

func (noTokens) Load(string) (*oauth2.Token, error) { return nil, nil }
func (n *noTokens) Update(name string, fn func([]byte) ([]byte, error)) error {
	return n.Cache.(Ledger).Update(name, fn)
}

// B27: the exchange after Invalidate happens at once, within the minute
// that otherwise separates two exchanges of a key.
func TestInvalidateExchangesAtOnce(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		tok := mustToken(t, s)
		time.Sleep(5 * time.Second)
		s.Invalidate(tok)
		before := time.Now()
		fresh := mustToken(t, s)
		assert.Equal(t, before, time.Now(), "no wait")
		assert.NotEqual(t, tok.AccessToken, fresh.AccessToken)
		assert.Equal(t, 2, srv.Exchanges())
	})
}

// B19: two base URLs (production and staging) with one cache directory
// share neither a budget, nor a 429 hold, nor a prober.
func TestBaseURLsDoNotShare(t *testing.T) {
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		prod := colonyauthtest.NewUnstarted()
		staging := colonyauthtest.NewUnstarted()
		const stagingURL = "https://staging.colony.test/api/v1"
		on := func(srv *colonyauthtest.Server, url string) *TokenSource {
			return New(srv.NewKey(), WithBaseURL(url), WithHTTPClient(srv.Client()), WithFileCache(dir), WithHostLimit(1))
		}
		mustToken(t, on(prod, prod.URL))
		_, err := on(prod, prod.URL).Token()
		require.ErrorIs(t, err, ErrRateLimited, "production's hour is spent")
		mustToken(t, on(staging, stagingURL)) // staging has its own

		prod.FailNext(1, http.StatusTooManyRequests, time.Hour)
		time.Sleep(2 * time.Hour)
		_, err = on(prod, prod.URL).Token()
		require.ErrorIs(t, err, ErrRateLimited, "production is held")
		mustToken(t, on(staging, stagingURL)) // staging is not

		prod.Down(http.StatusBadGateway)
		go on(prod, prod.URL).Token() // production's prober
		time.Sleep(2 * time.Hour)     // past the hold and the slots
		before := staging.Exchanges()
		mustToken(t, on(staging, stagingURL))
		assert.Equal(t, before+1, staging.Exchanges(), "staging sends while production has a prober")
	})
}

// B25: a group-writable (0770) directory and one owned by another user are
// refused; an entry over 64 KiB (65 KiB) is not read.
func TestFileCacheRefusals(t *testing.T) {
	bubble(t, func(t *testing.T) {
		planted := fakeJWT(fmt.Sprintf(`{"exp":%d,"sub":"planted"}`, time.Now().Add(24*time.Hour).Unix()))
		srv := colonyauthtest.NewUnstarted()
		served := func(dir string) string {
			s := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithFileCache(dir))
			return mustToken(t, s).AccessToken
		}
		plant := func(dir string) string {
			path := filepath.Join(dir, cacheKey(srv.URL, srv.APIKey)+".json")
			require.NoError(t, os.WriteFile(path, fmt.Appendf(nil, `{"access_token":%q,"expiry":%q}`, planted, time.Now().Add(24*time.Hour).Format(time.RFC3339)), 0o600))
			return path
		}

		group := t.TempDir()
		plant(group)
		require.NoError(t, os.Chmod(group, 0o770))
		assert.NotEqual(t, planted, served(group), "a 0770 directory is refused")

		big := t.TempDir()
		path := filepath.Join(big, cacheKey(srv.URL, srv.APIKey)+".json")
		entry := fmt.Appendf(nil, `{"access_token":%q,"expiry":%q,"pad":%q}`, planted, time.Now().Add(24*time.Hour).Format(time.RFC3339), strings.Repeat(" ", 65<<10))
		require.NoError(t, os.WriteFile(path, entry, 0o600)) // a valid entry, 65 KiB long
		assert.NotEqual(t, planted, served(big), "a 65 KiB entry is not read")

		kept := t.TempDir()
		plant(kept)
		assert.Equal(t, planted, served(kept), "the control: a 0700 directory of ours is used")

		other := t.TempDir()
		plant(other)
		if err := os.Chown(other, 12345, 12345); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("cannot chown a directory to another user in CI (root): %v", err)
			}
			t.Skipf("cannot chown here: %v", err)
		}
		assert.NotEqual(t, planted, served(other), "a directory owned by another user is refused")
	})
}

// B7: after a 4xx answer to a refresh of a valid token (401: the key was
// revoked meanwhile), the next attempt comes at least 4 minutes later (15
// an hour at most), and the valid token is served meanwhile.
func TestRefreshAfter4xxWaitsMinutes(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		tok := mustToken(t, s)
		time.Sleep(time.Until(tok.Expiry) + time.Second)
		srv.Down(http.StatusUnauthorized)
		start := time.Now()
		for time.Since(start) < time.Hour {
			assert.Equal(t, tok.AccessToken, mustToken(t, s).AccessToken)
			time.Sleep(10 * time.Second)
		}
		times := tokenRequests(srv)[1:]
		require.NotEmpty(t, times)
		for i := 1; i < len(times); i++ {
			assert.GreaterOrEqual(t, times[i].Sub(times[i-1]), 4*time.Minute, "refresh attempts ≥ 4 minutes apart")
		}
		assert.LessOrEqual(t, len(times), 15, "≤ 15 an hour")
	})
}

// B4, B27: a 5xx Retry-After is obeyed as the server said, never jittered
// to go sooner.
func TestRetryAfterIsNotJittered(t *testing.T) {
	bubble(t, func(t *testing.T) {
		clk := &sleepClock{Clock: clock.New()}
		srv, s := newFake(t, WithClock(clk), WithRetry(RetryConfig{MaxRetries: 3, Jitter: 1}))
		srv.FailNext(3, http.StatusServiceUnavailable, 7*time.Second)
		mustToken(t, s)
		assert.Equal(t, seconds(7, 7, 7), clk.Sleeps())
	})
}

// B18, B27: a Retry-After given as an HTTP date days away is capped at a
// day; after a 429 it holds the sources for that day, not for days.
func TestRetryAfterDateCappedAtADay(t *testing.T) {
	now := time.Date(2026, 5, 21, 12, 0, 0, 0, time.UTC)
	assert.Equal(t, 24*time.Hour, parseRetryAfter(now.Add(72*time.Hour).Format(http.TimeFormat), now))
	bubble(t, func(t *testing.T) {
		hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", time.Now().Add(72*time.Hour).UTC().Format(http.TimeFormat))
			answer(w, 429, `{"detail":"slow down"}`)
		})
		s := New(testKey, WithHTTPClient(hc), WithCache(NewMemoryCache()))
		_, err := s.Token()
		require.ErrorIs(t, err, ErrRateLimited)
		assert.Equal(t, 24*time.Hour, asError(t, err).RetryAfter)
	})
}
