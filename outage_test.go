//go:build sim

package colonyauth

// The outage simulation: how agents fare, and how hard they hit
// /auth/token, when it answers 502 for a while. Fake time (synctest), an
// in-memory server; every number is exact and the same on every run, but
// for the jittered rows. It makes about a million in-memory exchanges, so
// it is built only with the sim tag, and .ci/run runs it in its own step,
// without the race detector. See the table with:
//
//	go test -tags sim -run TestOutageSimulation -v .

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"golang.org/x/oauth2"
)

// simServer is a minimal /auth/token that is down during [from, until) and
// records when each request came and which ones got a token.
type simServer struct {
	mu          sync.Mutex
	from, until time.Time
	requests    []time.Time
	issued      []time.Time
}

// client returns an HTTP client that reaches the server in memory, with no
// more work per request than the simulation needs.
func (s *simServer) client() *http.Client {
	return &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		now := time.Now()
		s.mu.Lock()
		s.requests = append(s.requests, now)
		down := !now.Before(s.from) && now.Before(s.until)
		if !down {
			s.issued = append(s.issued, now)
		}
		s.mu.Unlock()
		resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Request: r}
		if down {
			resp.StatusCode = http.StatusBadGateway
			resp.Body = io.NopCloser(strings.NewReader(`{"detail":"Bad Gateway"}`))
			return resp, nil
		}
		tok := fakeJWT(fmt.Sprintf(`{"exp":%d,"n":%d}`, now.Add(24*time.Hour).Unix(), now.UnixNano()))
		resp.Body = io.NopCloser(strings.NewReader(`{"access_token":"` + tok + `","token_type":"bearer","expires_in":86400}`))
		return resp, nil
	})}
}

// seedSource is the client before this package, as the "seed" policy: 7
// attempts on the same 2→60 s schedule, the token kept until its exp, no
// serve-stale and no remembered failures. retries 0 is plain oauth2 with a
// hand-written exchange and no retry.
type seedSource struct {
	hc       *http.Client
	retries  int
	url, key string // "" = DefaultBaseURL's /auth/token and testKey
	tok      *oauth2.Token
	exp      time.Time
}

func (s *seedSource) Token() (*oauth2.Token, error) {
	if s.tok != nil && time.Now().Before(s.exp.Add(-10*time.Second)) {
		return s.tok, nil
	}
	var err error
	for n := 0; n <= s.retries; n++ {
		if n > 0 {
			time.Sleep(DefaultRetry().Delay(n - 1))
		}
		var tok *oauth2.Token
		if tok, err = handWritten(context.Background(), s.hc, cmp.Or(s.url, DefaultBaseURL+"/auth/token"), cmp.Or(s.key, testKey)); err == nil {
			s.tok = tok
			s.exp, err = handWrittenExp(tok.AccessToken)
			return tok, err
		}
	}
	return nil, err
}

type simPolicy struct {
	name string
	new  func(hc *http.Client) oauth2.TokenSource
}

var simPolicies = []simPolicy{
	{"colonyauth", func(hc *http.Client) oauth2.TokenSource { return New(testKey, WithHTTPClient(hc)) }},
	{"colonyauth, Jitter 0.5", func(hc *http.Client) oauth2.TokenSource {
		r := DefaultRetry()
		r.Jitter = 0.5
		return New(testKey, WithHTTPClient(hc), WithRetry(r))
	}},
	{"seed (7 attempts, no serve-stale, no memory)", func(hc *http.Client) oauth2.TokenSource { return &seedSource{hc: hc, retries: 6} }},
	{"plain oauth2, no retry", func(hc *http.Client) oauth2.TokenSource { return &seedSource{hc: hc} }},
}

type simScenario struct {
	name    string
	agents  int
	running bool // the agents' tokens are 13 h old when the outage starts
}

var simScenarios = []simScenario{
	{"agent starting", 1, false},
	{"running agent, token 13 h old", 1, true},
	{"100 agents starting together", 100, false},
}

var simOutages = []time.Duration{30 * time.Second, 2 * time.Minute, 10 * time.Minute, time.Hour, 12 * time.Hour}

type simResult struct {
	failed   int           // Token calls that returned an error (agents call every 10 s)
	requests int           // /auth/token requests while it was down
	recovery time.Duration // from recovery to the first token issued; -1 if none was needed
	peak     int           // most /auth/token requests in one second from recovery on
}

// simulate runs one policy through one scenario: the outage starts at T,
// agents call Token every 10 s until 15 minutes after it ends.
func simulate(t *testing.T, p simPolicy, sc simScenario, outage time.Duration) (r simResult) {
	synctest.Test(t, func(t *testing.T) {
		srv := &simServer{}
		hc := srv.client()
		sources := make([]oauth2.TokenSource, sc.agents)
		for i := range sources {
			sources[i] = p.new(hc)
			if sc.running {
				_, err := sources[i].Token()
				assert.NoError(t, err)
			}
		}
		if sc.running {
			time.Sleep(13 * time.Hour)
		}
		start := time.Now()
		srv.mu.Lock()
		srv.from, srv.until = start, start.Add(outage)
		before := len(srv.requests)
		srv.mu.Unlock()
		end := srv.until.Add(15 * time.Minute)

		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, src := range sources {
			wg.Go(func() {
				for time.Now().Before(end) {
					if _, err := src.Token(); err != nil {
						mu.Lock()
						r.failed++
						mu.Unlock()
					}
					time.Sleep(10 * time.Second)
				}
			})
		}
		wg.Wait()
		synctest.Wait()

		perSecond := map[int64]int{}
		for _, at := range srv.requests[before:] {
			if at.Before(srv.until) {
				r.requests++
			} else {
				perSecond[at.Unix()]++
			}
		}
		for _, n := range perSecond {
			r.peak = max(r.peak, n)
		}
		r.recovery = -1
		if i := slices.IndexFunc(srv.issued, func(at time.Time) bool { return !at.Before(srv.until) }); i >= 0 {
			r.recovery = srv.issued[i].Sub(srv.until)
		}
	})
	return r
}

// TestOutageSimulation prints the table of BENCHMARKS.md and the README,
// and checks the claims the README makes from it.
func TestOutageSimulation(t *testing.T) {
	results := map[string]simResult{}
	key := func(p simPolicy, sc simScenario, d time.Duration) string {
		return p.name + "|" + sc.name + "|" + d.String()
	}
	var table strings.Builder
	table.WriteString("| policy | scenario | outage | failed calls | requests during outage | recovery → new token | peak requests/s after recovery |\n|---|---|---|---|---|---|---|\n")
	for _, sc := range simScenarios {
		for _, d := range simOutages {
			for _, p := range simPolicies {
				r := simulate(t, p, sc, d)
				results[key(p, sc, d)] = r
				rec := "not needed"
				if r.recovery >= 0 {
					rec = r.recovery.Round(100 * time.Millisecond).String()
				}
				fmt.Fprintf(&table, "| %s | %s | %v | %d | %d | %s | %d |\n", p.name, sc.name, shortDuration(d), r.failed, r.requests, rec, r.peak)
			}
		}
	}
	t.Log("\n" + table.String())

	ours, jittered, seed, plain := simPolicies[0], simPolicies[1], simPolicies[2], simPolicies[3]
	for _, d := range simOutages {
		starting, running, fleet := simScenarios[0], simScenarios[1], simScenarios[2]
		// A running agent notices nothing shorter than its token's 11 h of life left,
		// sends at most 15 requests an hour, and has a new token within 10 min.
		if r := results[key(ours, running, d)]; d < 11*time.Hour {
			assert.Zero(t, r.failed, "running agent, %v", d)
			assert.LessOrEqual(t, r.requests, 15*int(d/time.Hour+1), "running agent, %v", d)
			assert.LessOrEqual(t, r.recovery, 10*time.Minute, "running agent, %v", d)
		}
		// A starting agent survives a 2-minute outage at start-up ...
		if d <= 2*time.Minute {
			assert.Zero(t, results[key(ours, starting, d)].failed, "starting agent, %v", d)
			assert.Positive(t, results[key(plain, starting, d)].failed, "plain oauth2 fails a %v outage", d)
		}
		for _, sc := range []simScenario{starting, fleet} {
			o, s := results[key(ours, sc, d)], results[key(seed, sc, d)]
			// ... and never sends more than the seed client. (It fails more calls
			// in long outages because it fails them at once, where the seed
			// client made each caller wait out a whole budget first.)
			assert.LessOrEqual(t, o.requests, s.requests, "%s, %v", sc.name, d)
			// It gets a token within 120 s of recovery (B18's longest wait).
			assert.LessOrEqual(t, o.recovery, 120*time.Second, "%s, %v", sc.name, d)
		}
		// Jitter spreads a fleet's retries: the recovery peak is lower.
		if d >= 10*time.Minute {
			assert.Less(t, results[key(jittered, fleet, d)].peak, results[key(ours, fleet, d)].peak, "fleet, %v", d)
		}
	}
}

func shortDuration(d time.Duration) string {
	s := d.String() // 10m0s → 10m, 1h0m0s → 1h
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
