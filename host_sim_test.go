//go:build sim

package colonyauth

// The host simulation: 100 agents on one host, each with its own key,
// behind one IP address that /auth/token allows 30 answers an hour
// (colonyauthtest.WithRateLimit). Fake time (synctest); every agent calls
// Token every 10 s. It runs each scenario for three policies: sources
// sharing a cache (a Ledger), sources sharing nothing, and the seed client.
// It takes minutes, so it is built only with the sim tag, and .ci/run runs
// it in its own step, without the race detector:
//
//	go test -tags sim -run TestHostSimulation -v .

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

type hostSim struct {
	name     string
	outage   time.Duration // 0: none
	running  bool          // the fleet has run 14 h when the outage starts
	crash    bool          // one agent, restarted before each call
	limited  time.Duration // after recovery, /auth/token answers 429 this long
	duration time.Duration // how long after recovery (or the start) the agents run
}

var hostSims = []hostSim{
	{name: "healthy start", duration: 30 * time.Hour},
	{name: "2 min outage at start", outage: 2 * time.Minute, duration: 3*time.Hour + 10*time.Minute},
	{name: "1 h outage at start", outage: time.Hour, duration: 3*time.Hour + 10*time.Minute},
	{name: "13 h outage at start", outage: 13 * time.Hour, duration: 3*time.Hour + 10*time.Minute},
	{name: "2 min outage, running", outage: 2 * time.Minute, running: true, duration: 3*time.Hour + 10*time.Minute},
	{name: "1 h outage, running", outage: time.Hour, running: true, duration: 3*time.Hour + 10*time.Minute},
	{name: "13 h outage, running", outage: 13 * time.Hour, running: true, duration: 3*time.Hour + 10*time.Minute},
	{name: "crash-looping agent, 1 h outage", outage: time.Hour, crash: true, duration: time.Hour},
	{name: "1 h outage, 429s for 10 min at recovery", outage: time.Hour, limited: 10 * time.Minute, duration: 3*time.Hour + 30*time.Minute},
}

type hostPolicy struct {
	name string
	new  func(srv *colonyauthtest.Server, key string, shared Cache) oauth2.TokenSource
}

var hostPolicies = []hostPolicy{
	{"colonyauth, sharing a cache", func(srv *colonyauthtest.Server, key string, shared Cache) oauth2.TokenSource {
		return New(key, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithCache(shared))
	}},
	{"colonyauth, sharing nothing", func(srv *colonyauthtest.Server, key string, _ Cache) oauth2.TokenSource {
		return New(key, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()))
	}},
	{"seed client", func(srv *colonyauthtest.Server, key string, _ Cache) oauth2.TokenSource {
		return &seedSource{hc: srv.Client(), retries: 6, url: srv.URL + "/auth/token", key: key}
	}},
}

type hostResult struct {
	failed         int           // failed calls
	failedOutlived int           // ... of agents whose token outlived the outage
	firstHour      int           // requests in the outage's first hour (or the run's, without one)
	laterHour      int           // most requests in a later hour of the outage
	maxHour        int           // most requests in any rolling hour
	got429         int           // 429 answers
	first, last    time.Duration // first and last agent's token after recovery (or the start); -1: some never got one
	refreshHour    int           // most refreshes in a rolling hour
	lateRefresh    int           // refreshes after 70 % of the old token's life
}

// simulateHost runs one policy through one scenario.
func simulateHost(t *testing.T, p hostPolicy, sc hostSim) (r hostResult) {
	synctest.Test(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted(colonyauthtest.WithRateLimit(30))
		shared := NewMemoryCache()
		n := 100
		if sc.crash {
			n = 1
		}
		keys := make([]string, n)
		sources := make([]oauth2.TokenSource, n)
		for i := range keys {
			keys[i] = srv.NewKey()
			sources[i] = p.new(srv, keys[i], shared)
		}
		type seen struct {
			access   string
			iat, exp time.Time
			at       time.Time // when the agent first had it
		}
		history := make([][]seen, n)
		var mu sync.Mutex
		var outageStart, recovery time.Time
		failures := make([]int, n)
		start := time.Now()

		call := func(i int) {
			src := sources[i]
			if sc.crash {
				src = p.new(srv, keys[i], shared) // a new process every call
			}
			tok, err := src.Token()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures[i]++
				return
			}
			h := history[i]
			if len(h) == 0 || h[len(h)-1].access != tok.AccessToken {
				exp, iat, _ := jwtClaims(tok.AccessToken)
				history[i] = append(h, seen{tok.AccessToken, iat, exp, time.Now()})
			}
		}
		// A watchdog, so that a broken rule fails fast instead of making
		// the run crawl: every fake 10 minutes the shared record must hold
		// no more slots than an hour allows (twice the limit, reservations
		// included), or the run stops.
		var broken atomic.Bool
		runFor := func(d time.Duration) {
			end := time.Now().Add(d)
			var wg sync.WaitGroup
			for i := range sources {
				wg.Go(func() {
					for time.Now().Before(end) && !broken.Load() {
						call(i)
						time.Sleep(10 * time.Second)
					}
				})
			}
			wg.Go(func() {
				for time.Now().Before(end) && !broken.Load() {
					time.Sleep(10 * time.Minute)
					if n := sharedSlots(shared, srv.URL); n > 2*DefaultHostLimit {
						t.Errorf("the host record holds %d slots: old ones are not pruned", n)
						broken.Store(true)
					}
				}
			})
			wg.Wait()
		}

		if sc.running {
			runFor(14 * time.Hour)
			mu.Lock()
			clear(failures)
			mu.Unlock()
		}
		outageStart = time.Now()
		snapshot := make([]time.Time, n) // each agent's token expiry when the outage starts
		for i, h := range history {
			if len(h) > 0 {
				snapshot[i] = h[len(h)-1].exp
			}
		}
		if sc.outage > 0 {
			srv.Down(http.StatusBadGateway)
			go func() {
				time.Sleep(sc.outage)
				if sc.limited > 0 {
					srv.Down(http.StatusTooManyRequests)
					time.Sleep(sc.limited)
				}
				srv.Up()
			}()
		}
		recovery = outageStart.Add(sc.outage)
		runFor(sc.outage + sc.duration)

		var times []time.Time
		for _, q := range srv.Requests() {
			if q.Path != "/auth/token" {
				continue
			}
			if q.Status == http.StatusTooManyRequests {
				r.got429++
			}
			if !q.Time.Before(outageStart) {
				times = append(times, q.Time)
			}
		}
		r.firstHour = countIn(times, outageStart, outageStart.Add(time.Hour))
		for h := time.Hour; h+time.Hour <= sc.outage; h += time.Hour {
			r.laterHour = max(r.laterHour, countIn(times, outageStart.Add(h), outageStart.Add(h+time.Hour)))
		}
		r.maxHour = maxPerHour(times)
		r.first, r.last = -1, -1
		var refreshes []time.Time
		for i, h := range history {
			r.failed += failures[i]
			if snapshot[i].After(recovery) {
				r.failedOutlived += failures[i]
				if failures[i] > 0 && os.Getenv("HOSTSIM_DEBUG") != "" {
					for _, s := range h {
						fmt.Println("agent", i, "failures", failures[i], "token iat", s.iat.Sub(start), "exp", s.exp.Sub(start), "seen", s.at.Sub(start))
					}
				}
			}
			got := time.Duration(-1)
			for j, s := range h {
				if !s.at.Before(recovery) && got < 0 {
					got = s.at.Sub(recovery)
				}
				if j > 0 {
					refreshes = append(refreshes, s.at)
					old := h[j-1]
					if sc.outage == 0 && s.at.Sub(old.iat) > old.exp.Sub(old.iat)*7/10 {
						r.lateRefresh++
					}
				}
			}
			if sc.running {
				continue // their tokens came before; first and last say nothing
			}
			if got < 0 {
				r.last = -2 // some agent never got a token
				continue
			}
			if r.first < 0 || got < r.first {
				r.first = got
			}
			if r.last != -2 {
				r.last = max(r.last, got)
			}
		}
		r.refreshHour = maxPerHour(refreshes)
	})
	return r
}

// TestHostSimulation prints the host table of BENCHMARKS.md and checks
// B18–B23's numbers for sources sharing a cache.
func TestHostSimulation(t *testing.T) {
	var table strings.Builder
	table.WriteString("| scenario | policy | failed calls (of agents whose token outlived the outage) | requests: outage's 1st hour / later hours (max) / any hour (max) | 429s | first / last token after recovery | refreshes: max an hour / after 70 % of life |\n|---|---|---|---|---|---|---|\n")
	results := map[string]hostResult{}
	for _, sc := range hostSims {
		for _, p := range hostPolicies {
			var r hostResult
			t.Run(sc.name+"/"+p.name, func(t *testing.T) { r = simulateHost(t, p, sc) })
			results[sc.name+"|"+p.name] = r
			fmt.Fprintf(&table, "| %s | %s | %d (%d) | %d / %d / %d | %d | %s / %s | %d / %d |\n", sc.name, p.name,
				r.failed, r.failedOutlived, r.firstHour, r.laterHour, r.maxHour, r.got429, simDur(r.first), simDur(r.last), r.refreshHour, r.lateRefresh)
		}
	}
	t.Log("\n" + table.String())

	ours := func(name string) hostResult { return results[name+"|"+hostPolicies[0].name] }
	healthy := ours("healthy start")
	assert.Zero(t, healthy.got429, "healthy start: no 429")
	assert.LessOrEqual(t, healthy.last, 3*time.Hour+5*time.Minute, "healthy start: every token by 3 h 05 min")
	assert.LessOrEqual(t, healthy.refreshHour, 30, "refreshes ≤ 30 in any hour")
	assert.Zero(t, healthy.lateRefresh, "every refresh before 70 % of the token's life")
	for _, name := range []string{"1 h outage at start", "13 h outage at start", "1 h outage, running", "13 h outage, running", "2 min outage at start", "2 min outage, running"} {
		r := ours(name)
		assert.LessOrEqual(t, r.firstHour, 40, "%s: ≤ 40 requests in the outage's first hour", name)
		assert.LessOrEqual(t, r.laterHour, 30, "%s: ≤ 30 in each later hour", name)
		assert.Zero(t, r.got429, "%s: no 429", name)
		assert.Zero(t, r.failedOutlived, "%s: no failed call for an agent whose token outlives the outage", name)
		if !strings.Contains(name, "running") {
			assert.True(t, r.first >= 0 && r.first <= 120*time.Second, "%s: first token ≤ 120 s after recovery: %v", name, r.first)
			assert.True(t, r.last >= 0 && r.last <= 3*time.Hour+5*time.Minute, "%s: every token by recovery + 3 h 05 min: %v", name, r.last)
		}
	}
	crash := ours("crash-looping agent, 1 h outage")
	assert.LessOrEqual(t, crash.firstHour, 40, "a crash-looping agent obeys the running intervals")
	limited := ours("1 h outage, 429s for 10 min at recovery")
	assert.LessOrEqual(t, limited.got429, 5, "429s at recovery: held together, doubling")
	assert.Less(t, limited.got429, results["1 h outage, 429s for 10 min at recovery|"+hostPolicies[1].name].got429)
}

func simDur(d time.Duration) string {
	switch d {
	case -1:
		return "—"
	case -2:
		return "not all"
	}
	return d.Round(time.Second).String()
}

// TestHostSimulationSpreadAges: 100 running agents share a cache; their
// tokens are 0–12 h old (24 h life) when /auth/token goes down for 13
// hours (30 answers an hour). After recovery, slots go by urgency (B20):
// agents whose token would expire first, and those without one, before
// early refreshes, so no agent whose token outlives the outage fails a
// call (B23). Rows for a cache directory and for memory.
func TestHostSimulationSpreadAges(t *testing.T) {
	var table strings.Builder
	table.WriteString("| shared cache | failed calls of agents whose token outlived the outage | agents that failed a call (of those) | requests: outage / any hour after (max) | 429s | early refreshes in the minute after recovery |\n|---|---|---|---|---|---|\n")
	for _, row := range []struct {
		name  string
		cache func(t *testing.T) Cache
	}{
		{"directory", func(t *testing.T) Cache { return fileCache{dir: t.TempDir()} }},
		{"memory", func(*testing.T) Cache { return NewMemoryCache() }},
	} {
		t.Run(row.name, func(t *testing.T) {
			r := simulateSpreadAges(t, row.cache(t))
			fmt.Fprintf(&table, "| %s | %d | %d | %d / %d | %d | %d |\n", row.name, r.failedOutlived, r.agentsFailed, r.during, r.maxHour, r.got429, r.earlyAtRecovery)
			assert.Zero(t, r.failedOutlived, "no failed call for an agent whose token outlives the outage")
			assert.Zero(t, r.got429, "no 429")
			assert.LessOrEqual(t, r.maxHour, 30, "≤ 30 answers in any hour after recovery")
			assert.LessOrEqual(t, r.during, 13*30+10, "≤ 30 an hour during the outage")
		})
	}
	t.Log("\n" + table.String())
}

type spreadResult struct {
	failedOutlived, agentsFailed int
	during, maxHour, got429      int
	earlyAtRecovery              int // refreshes of tokens with more than 2 h left in the minute after recovery
}

func simulateSpreadAges(t *testing.T, cache Cache) (r spreadResult) {
	synctest.Test(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted(colonyauthtest.WithRateLimit(30))
		const n = 100
		start := time.Now()
		recovery := start.Add(13 * time.Hour)
		sources := make([]*TokenSource, n)
		exps := make([]time.Time, n)
		for i := range sources {
			key := srv.NewKey()
			access, exp := fakeAged(start, time.Duration(i)*12*time.Hour/n+time.Duration(i*37)*time.Second, i)
			if err := cache.Store(cacheKey(srv.URL, key), &oauth2.Token{AccessToken: access, Expiry: exp}); err != nil {
				t.Fatal(err)
			}
			exps[i] = exp
			sources[i] = New(key, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithCache(cache))
		}
		srv.Down(http.StatusBadGateway)
		go func() { time.Sleep(time.Until(recovery)); srv.Up() }()
		failures := make([]int, n)
		var mu sync.Mutex
		var early int
		end := recovery.Add(4 * time.Hour)
		var wg sync.WaitGroup
		for i, src := range sources {
			wg.Go(func() {
				last := ""
				for time.Now().Before(end) {
					tok, err := src.Token()
					mu.Lock()
					switch {
					case err != nil:
						failures[i]++
					case tok.AccessToken != last:
						if last != "" && !time.Now().Before(recovery) && time.Now().Before(recovery.Add(time.Minute)) {
							if exp, _, _ := jwtClaims(last); time.Until(exp) > 2*time.Hour {
								early++
							}
						}
						last = tok.AccessToken
					}
					mu.Unlock()
					time.Sleep(10 * time.Second)
				}
			})
		}
		wg.Wait()
		for i, f := range failures {
			if exps[i].After(recovery) {
				r.failedOutlived += f
				if f > 0 {
					r.agentsFailed++
				}
			}
		}
		var after []time.Time
		for _, q := range srv.Requests() {
			if q.Path != "/auth/token" {
				continue
			}
			if q.Status == http.StatusTooManyRequests {
				r.got429++
			}
			if q.Time.Before(recovery) {
				r.during++
			} else {
				after = append(after, q.Time)
			}
		}
		r.maxHour = maxPerHour(after)
		r.earlyAtRecovery = early
	})
	return r
}

// sharedSlots is the number of slots in the host record of a memory cache.
func sharedSlots(c Cache, baseURL string) int {
	var h hostRecord
	c.(Ledger).Update(ledgerName(baseURL), func(old []byte) ([]byte, error) {
		json.Unmarshal(old, &h)
		return old, nil
	})
	return len(h.Slots)
}
