//go:build !race

package colonyauth

// B23's outcomes for a host of 100 agents, in fake time. Each takes
// seconds, and a minute under the race detector, so they are left out of
// -race builds; .ci/run runs them (without -race) with the simulations.

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// B20: 100 agents starting together on a healthy server with 30 answers an
// hour: no 429, at most 30 requests in any hour, every token by 3 h 05 min;
// the agents waiting get ErrRateLimited at once, with nothing sent.
func TestHostBudgetHealthyStart(t *testing.T) {
	for name, cache := range map[string]func(t *testing.T) Cache{
		"memory":    func(*testing.T) Cache { return NewMemoryCache() },
		"directory": func(t *testing.T) Cache { return fileCache{dir: t.TempDir()} },
	} {
		t.Run(name, func(t *testing.T) { hostBudgetHealthyStart(t, cache(t)) })
	}
}

func hostBudgetHealthyStart(t *testing.T, cache Cache) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted(colonyauthtest.WithRateLimit(30))
		agents := newHost(srv, 100, cache)
		start := time.Now()
		runAgents(agents, start.Add(3*time.Hour+6*time.Minute))
		assert.Zero(t, srv.RateLimited(), "no 429")
		assert.LessOrEqual(t, maxPerHour(tokenRequests(srv)), 30)
		var last time.Duration
		for i, a := range agents {
			require.False(t, a.got.IsZero(), "agent %d has no token", i)
			assert.NoError(t, a.badErr, "agent %d", i)
			last = max(last, a.got.Sub(start))
		}
		assert.LessOrEqual(t, last, 3*time.Hour+5*time.Minute)
		t.Logf("last token at %v; %d requests", last, len(tokenRequests(srv)))
	})
}

// B21, B23: 100 agents starting during a 1-hour outage: one prober, ≤ 40
// requests in the outage's hour, the first token ≤ 120 s after recovery,
// every agent's by recovery + 3 h 05 min, no 429.
func TestHostOneProberDuringOutage(t *testing.T) {
	// Parallel: each takes seconds (100 agents, 4 fake hours), more under -race.
	t.Run("memory", func(t *testing.T) { t.Parallel(); hostOneProber(t, NewMemoryCache()) })
	t.Run("directory", func(t *testing.T) { t.Parallel(); hostOneProber(t, fileCache{dir: t.TempDir()}) })
}

func hostOneProber(t *testing.T, cache Cache) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted(colonyauthtest.WithRateLimit(30))
		srv.Down(http.StatusBadGateway)
		agents := newHost(srv, 100, cache)
		start := time.Now()
		recovery := start.Add(time.Hour)
		go func() {
			time.Sleep(time.Hour)
			srv.Up()
		}()
		runAgents(agents, recovery.Add(3*time.Hour+6*time.Minute))
		times := tokenRequests(srv)
		during := countIn(times, start, recovery)
		assert.LessOrEqual(t, during, 40, "requests in the outage's hour")
		assert.Zero(t, srv.RateLimited())
		var first, last time.Duration = time.Hour * 100, 0
		for i, a := range agents {
			require.False(t, a.got.IsZero(), "agent %d has no token", i)
			assert.NoError(t, a.badErr, "agent %d", i)
			assert.LessOrEqual(t, a.waits, 1, "agent %d waited for the prober once, then failed at once", i)
			first, last = min(first, a.got.Sub(recovery)), max(last, a.got.Sub(recovery))
		}
		assert.LessOrEqual(t, first, 120*time.Second)
		assert.LessOrEqual(t, last, 3*time.Hour+5*time.Minute)
		t.Logf("%d requests during the outage; first token %v after recovery, last %v", during, first, last)
	})
}
