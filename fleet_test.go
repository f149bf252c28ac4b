package colonyauth

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// Tests of B18–B23: many sources, one IP address.

// tokenRequests returns the times of the /auth/token requests srv received.
func tokenRequests(srv *colonyauthtest.Server) []time.Time {
	var out []time.Time
	for _, r := range srv.Requests() {
		if r.Path == "/auth/token" {
			out = append(out, r.Time)
		}
	}
	return out
}

// maxPerHour is the most requests in any rolling hour.
func maxPerHour(times []time.Time) int {
	times = slices.SortedFunc(slices.Values(times), time.Time.Compare)
	most, j := 0, 0
	for i, a := range times {
		for j < len(times) && times[j].Sub(a) < time.Hour {
			j++
		}
		most = max(most, j-i)
	}
	return most
}

// countIn counts the times in [from, to).
func countIn(times []time.Time, from, to time.Time) int {
	n := 0
	for _, t := range times {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// agent is one source of a simulated host, calling Token every 10 s.
type agent struct {
	src      *TokenSource
	got      time.Time // its first token
	failures int
	waits    int   // calls that waited for another source's probes and failed
	badErr   error // an error that is not what B20/B21 promise
}

// runAgents makes each agent call Token every 10 s until end.
func runAgents(agents []*agent, end time.Time) {
	var wg sync.WaitGroup
	var broken atomic.Bool // a watchdog: a broken rule ends the run at once
	for _, a := range agents {
		wg.Go(func() {
			for time.Now().Before(end) && !broken.Load() {
				start := time.Now()
				_, err := a.src.Token()
				switch {
				case err == nil && a.got.IsZero():
					a.got = time.Now()
				case err != nil:
					a.failures++
					var e *Error
					if !errors.As(err, &e) || !(errors.Is(err, ErrRateLimited) || errors.Is(err, ErrUnavailable)) {
						a.badErr = err
					} else if e.Attempts == 0 && e.RetryAfter <= 0 {
						// A refusal always says when room frees; one that
						// does not (a slot older than the hour still
						// counted) would make every call ask again.
						a.badErr = fmt.Errorf("a refusal without a time to retry: %v", err)
					}
				}
				if waited := time.Since(start); waited > time.Second && e0(err) {
					// B21: a caller without a token waits for the prober at
					// most as long as its own schedule would have lasted,
					// once per outage; later calls fail at once.
					a.waits++
					if waited > DefaultRetry().Budget()+10*time.Second { // + turns at a contended lock
						a.badErr = fmt.Errorf("a caller waited %v for an error with nothing sent", waited)
					}
				}
				if a.badErr != nil {
					broken.Store(true)
				}
				time.Sleep(10 * time.Second)
			}
		})
	}
	wg.Wait()
}

// e0 reports whether err says nothing was sent (a shared or budget error).
func e0(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Attempts == 0
}

// newHost returns n agents, each with its own key, sharing one cache.
func newHost(srv *colonyauthtest.Server, n int, cache Cache, opts ...Option) []*agent {
	agents := make([]*agent, n)
	for i := range agents {
		agents[i] = &agent{src: New(srv.NewKey(), append([]Option{WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithCache(cache)}, opts...)...)}
	}
	return agents
}

// B18: after a spent budget a source alone sends single attempts at 30 s,
// 60 s, then every 120 s: ≤ 40 requests in the outage's first hour, ≤ 30 in
// each later one, and its token ≤ 120 s after recovery.
func TestSpentBudgetSingleAttempts(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		srv.Down(http.StatusBadGateway)
		start := time.Now()
		_, err := s.Token()
		require.ErrorIs(t, err, ErrUnavailable)
		assert.Equal(t, 30*time.Second, asError(t, err).RetryAfter)
		for time.Since(start) < 2*time.Hour+7*time.Minute {
			_, err := s.Token()
			require.ErrorIs(t, err, ErrUnavailable)
			time.Sleep(time.Second)
		}
		times := tokenRequests(srv)
		var gaps []time.Duration
		for i := 7; i < 11; i++ {
			gaps = append(gaps, times[i].Sub(times[i-1]).Round(time.Second))
		}
		assert.Equal(t, seconds(30, 60, 120, 120), gaps, "single attempts at 30 s, 60 s, then every 120 s")
		first := countIn(times, start, start.Add(time.Hour))
		assert.LessOrEqual(t, first, 40)
		assert.LessOrEqual(t, countIn(times, start.Add(time.Hour), start.Add(2*time.Hour)), 30)
		t.Logf("requests: %d in the first hour, %d in the second", first, countIn(times, start.Add(time.Hour), start.Add(2*time.Hour)))

		srv.Up()
		up := time.Now()
		for {
			if _, err := s.Token(); err == nil {
				break
			}
			time.Sleep(time.Second)
		}
		assert.LessOrEqual(t, time.Since(up), 120*time.Second, "token after recovery")
	})
}

// B18: a 429 without Retry-After holds 60 s, doubling per consecutive 429
// up to an hour.
func TestRateLimitHoldDoubles(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		srv.Down(http.StatusTooManyRequests)
		var holds []time.Duration
		for range 9 {
			_, err := s.Token()
			require.ErrorIs(t, err, ErrRateLimited)
			hold := asError(t, err).RetryAfter
			holds = append(holds, hold)
			time.Sleep(hold)
		}
		assert.Equal(t, seconds(60, 120, 240, 480, 960, 1920, 3600, 3600, 3600), holds)
		assert.Equal(t, 9, srv.Exchanges(), "nothing sent during a hold")
		srv.Up()
		time.Sleep(time.Hour)
		mustToken(t, s)
		srv.Down(http.StatusTooManyRequests)
		s.Invalidate(mustToken(t, s))
		_, err := s.Token()
		assert.Equal(t, time.Minute, asError(t, err).RetryAfter, "a success resets the doubling")
	})
}

// B19: Update is atomic, in memory and across the files of a directory.
func TestLedgerUpdateIsAtomic(t *testing.T) {
	for name, l := range map[string]Ledger{"memory": NewMemoryCache().(Ledger), "file": fileCache{dir: t.TempDir()}} {
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					for range 10 {
						require.NoError(t, l.Update("counter", func(old []byte) ([]byte, error) {
							return append(old, 'x'), nil
						}))
					}
				})
			}
			wg.Wait()
			var got []byte
			require.NoError(t, l.Update("counter", func(old []byte) ([]byte, error) { got = old; return old, nil }))
			assert.Len(t, got, 200, "no update lost")
			assert.Error(t, l.Update("counter", func([]byte) ([]byte, error) { return nil, errors.New("no") }))
			require.NoError(t, l.Update("counter", func(old []byte) ([]byte, error) { got = old; return old, nil }))
			assert.Len(t, got, 200, "an error stores nothing")
		})
	}
	assert.Error(t, fileCache{dir: t.TempDir()}.Update("../escape", func(b []byte) ([]byte, error) { return b, nil }))
}

// countingLedger counts Update calls and can fail them.
type countingLedger struct {
	Cache
	updates atomic.Int32
	fail    atomic.Bool
}

func (c *countingLedger) Update(name string, fn func([]byte) ([]byte, error)) error {
	c.updates.Add(1)
	if c.fail.Load() {
		return errors.New("ledger offline")
	}
	return c.Cache.(Ledger).Update(name, fn)
}

// B19: the cached path never touches the Ledger; a failing Ledger fails no
// call: the source acts alone, says so once, and rejoins.
func TestLedgerOffTheCachedPath(t *testing.T) {
	bubble(t, func(t *testing.T) {
		var logs logBuffer
		l := &countingLedger{Cache: NewMemoryCache()}
		srv, s := newFake(t, WithCache(l), WithLogger(logs.logger()))
		mustToken(t, s)
		n := l.updates.Load()
		assert.Positive(t, n)
		for range 1000 {
			mustToken(t, s)
			time.Sleep(time.Second)
		}
		assert.Equal(t, n, l.updates.Load(), "no Update on the cached path")

		l.fail.Store(true)
		for range 3 {
			time.Sleep(time.Minute) // B27: not a token rejected right after its exchange
			s.Invalidate(mustToken(t, s))
			mustToken(t, s)
		}
		assert.Equal(t, 4, srv.Exchanges())
		assert.Equal(t, 1, countLines(logs.String(), "acting alone"), "said once")
		require.ErrorContains(t, s.Alone(), "ledger offline", "the reason is kept")
		l.fail.Store(false)
		time.Sleep(time.Minute)
		s.Invalidate(mustToken(t, s))
		mustToken(t, s)
		assert.Equal(t, 1, countLines(logs.String(), "works again"))
		assert.NoError(t, s.Alone(), "coordinating again")
	})
}

// B19: a corrupt record is treated as empty and logged at Debug.
func TestCorruptLedgerRecord(t *testing.T) {
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		var logs logBuffer
		srv := colonyauthtest.NewUnstarted()
		require.NoError(t, os.WriteFile(filepath.Join(dir, ledgerName(srv.URL)+".ledger"), []byte("{not json"), 0o600))
		s := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithFileCache(dir), WithLogger(logs.logger()))
		mustToken(t, s)
		assert.Contains(t, logs.String(), "level=DEBUG msg=\"colonyauth: shared ledger record: not a JSON object")
	})
}

// B20: a 429 seen by one sharing source holds them all until Retry-After.
func TestHostHoldAfter429(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		agents := newHost(srv, 2, NewMemoryCache())
		srv.FailNext(1, http.StatusTooManyRequests, 300*time.Second)
		_, err := agents[0].src.Token()
		require.ErrorIs(t, err, ErrRateLimited)
		_, err = agents[1].src.Token()
		require.ErrorIs(t, err, ErrRateLimited)
		assert.Equal(t, 300*time.Second, asError(t, err).RetryAfter)
		assert.Zero(t, asError(t, err).Attempts)
		assert.Equal(t, 1, srv.Exchanges())
		time.Sleep(300 * time.Second)
		mustToken(t, agents[1].src)
		assert.Equal(t, 2, srv.Exchanges())
	})
}

// B20: an early refresh (more than 2 h left) takes a slot only while fewer
// than two thirds of the hour's slots are used; a source without a token
// may use them all.
func TestHostUrgentNeedsFirst(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted(colonyauthtest.WithLifetime(10 * time.Hour))
		cache := NewMemoryCache()
		agents := newHost(srv, 4, cache, WithHostLimit(3))
		early := agents[0].src
		tok := mustToken(t, early)
		time.Sleep(time.Until(tok.Expiry) - time.Minute) // just before its refresh point, 4–6 h in
		mustToken(t, agents[1].src)
		mustToken(t, agents[2].src) // 2 of 3 slots used
		time.Sleep(time.Minute)
		assert.Equal(t, tok.AccessToken, mustToken(t, early).AccessToken, "served")
		synctest.Wait()
		assert.Equal(t, 3, srv.Exchanges(), "the early refresh yields")
		mustToken(t, agents[3].src) // no token: may take the last slot
		assert.Equal(t, 4, srv.Exchanges())
		for srv.Exchanges() == 4 {
			assert.Equal(t, tok.AccessToken, mustToken(t, early).AccessToken, "the valid token is served meanwhile")
			time.Sleep(time.Minute)
		}
		assert.Greater(t, time.Since(tok.Expiry), 55*time.Minute, "the refresh waited for slots to free")
	})
}

// B22: sources with the same key and cache directory make one exchange
// between them; the others wait for it and load the token.
func TestSameKeyOneExchange(t *testing.T) {
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		srv := colonyauthtest.NewUnstarted()
		// Another agent's exchange shows the host up, so that sources may
		// exchange side by side: only the key's own record keeps them apart.
		mustToken(t, New(srv.NewKey(), WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithFileCache(dir)))
		srv.SetLatency(2 * time.Second)
		var wg sync.WaitGroup
		tokens := make([]string, 8)
		for i := range tokens {
			wg.Go(func() {
				s := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithFileCache(dir))
				tokens[i] = mustToken(t, s).AccessToken
			})
		}
		wg.Wait()
		assert.Equal(t, 2, srv.Exchanges(), "one for the other agent, one for the 8 sources of this key")
		assert.Len(t, slices.Compact(tokens), 1, "the same token for all")
	})
}

// B22: the failure state survives a restart: a new source (a restarted
// process) with the same directory obeys the cool-downs and the probe
// schedule of the one before.
func TestFailureStateSurvivesRestart(t *testing.T) {
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		srv := colonyauthtest.NewUnstarted()
		restart := func(key string) *TokenSource {
			return New(key, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithFileCache(dir))
		}
		_, err := restart("col_wrong").Token()
		require.ErrorIs(t, err, ErrInvalidKey)
		for range 10 {
			time.Sleep(2 * time.Second)
			_, err = restart("col_wrong").Token()
			require.ErrorIs(t, err, ErrInvalidKey, "remembered across restarts")
		}
		assert.Equal(t, 1, srv.Exchanges())

		srv.Down(http.StatusBadGateway)
		time.Sleep(time.Minute)
		_, err = restart(srv.APIKey).Token()
		require.ErrorIs(t, err, ErrUnavailable)
		assert.Equal(t, 1+7, srv.Exchanges())
		spent := time.Now()
		for range 3 {
			time.Sleep(5 * time.Second)
			_, err = restart(srv.APIKey).Token()
			require.ErrorIs(t, err, ErrUnavailable)
		}
		// Each restarted process waited for the host's next single attempt
		// and made it: 30 s after the spent budget, then 60 s and 120 s
		// later (B18), none in between.
		times := tokenRequests(srv)[1+7:]
		require.Len(t, times, 3)
		assert.Equal(t, seconds(30, 60, 120), []time.Duration{times[0].Sub(spent), times[1].Sub(times[0]), times[2].Sub(times[1])})

		srv.Up()
		time.Sleep(time.Minute)
		tok := mustToken(t, restart(srv.APIKey))
		assert.Equal(t, times[2].Add(120*time.Second), time.Now(), "the next single attempt brings the token")
		for range 5 {
			assert.Equal(t, tok.AccessToken, mustToken(t, restart(srv.APIKey)).AccessToken)
		}
		assert.Equal(t, 1+7+3+1, srv.Exchanges(), "a crash-looping agent with a cached token sends nothing")
	})
}

func countLines(text, substr string) int {
	n := 0
	for line := range strings.Lines(text) {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// B21: during an outage no more than 30 single attempts go in any hour,
// last chances included: with 30 in the last hour, a token about to
// expire waits for the oldest to leave the hour.
func TestSingleAttemptsCappedAt30AnHour(t *testing.T) {
	now := time.Date(2026, 5, 21, 12, 0, 0, 0, time.UTC)
	h := &hostRecord{Down: ms(now.Add(-3 * time.Hour)), Tries: 40, Last: ms(now.Add(-100 * time.Second))}
	for i := range probeCap {
		h.Singles = append(h.Singles, ms(now.Add(-time.Hour+time.Duration(i+1)*110*time.Second)))
	}
	n := need{owner: "a", key: "k", stale: true, exp: now.Add(10 * time.Second), retry: DefaultRetry()} // its last chance is due
	v := h.gate(n, now, 5*time.Minute)
	assert.Equal(t, deny, v.act, "the last chance would be the 31st in the hour")
	assert.Equal(t, at(h.Singles[0]).Add(time.Hour), v.until)

	h.Singles = h.Singles[1:] // 29 in the hour: the last chance may go
	v = h.gate(n, now, 5*time.Minute)
	assert.Equal(t, send, v.act)
}
