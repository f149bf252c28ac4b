//go:build sdk

package main

// The host broker with agents that are real processes of the official
// Colony Python SDK (../shared/clients, on PYTHONPATH; never copied here),
// against a loopback colonyauthtest server with the real limit of 30
// answers an hour per address. They take a minute (a real 30 s blip), so
// they are built with -tags sdk; .ci/run runs them and fails, not skips,
// when python3 or the SDK is missing:
//
//	COLONY_SDK_PYTHON=…/colony-sdk-python-1.34/src go test -tags sdk -run Python -v ./cmd/colonytoken

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// sdkPath is the official Python SDK's source directory. Outside CI a test
// that needs it skips when it is missing; under CI it fails.
func sdkPath(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("COLONY_SDK_PYTHON"), "../../../shared/clients/colony-sdk-python-1.34/src"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(c, "colony_sdk", "client.py")); err == nil {
			if _, err := exec.LookPath("python3"); err != nil {
				missing(t, "python3")
			}
			abs, _ := filepath.Abs(c)
			return abs
		}
	}
	missing(t, "the Colony Python SDK (set COLONY_SDK_PYTHON to its src directory)")
	return ""
}

func missing(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing: .ci/run must provide it", what)
	}
	t.Skipf("%s is missing (CI provides it)", what)
}

// agentResult is what testdata/sdk_agent.py printed.
type agentResult struct {
	OK         bool    `json:"ok"`
	Error      string  `json:"error"`
	RetryAfter float64 `json:"retry_after"`
	took       time.Duration
}

// runSDKAgents runs one Python SDK agent per key at once against baseURL.
func runSDKAgents(t *testing.T, sdk, baseURL string, keys []string, extra ...string) []agentResult {
	t.Helper()
	results := make([]agentResult, len(keys))
	var wg sync.WaitGroup
	for i, key := range keys {
		wg.Go(func() {
			cmd := exec.Command("python3", "testdata/sdk_agent.py")
			cmd.Env = append(os.Environ(), "PYTHONPATH="+sdk, "COLONY_API_KEY="+key, "COLONY_BASE_URL="+baseURL,
				"NO_PROXY=*", "HOME="+t.TempDir())
			cmd.Env = append(cmd.Env, extra...)
			began := time.Now()
			out, _ := cmd.Output()
			results[i].took = time.Since(began)
			if err := json.Unmarshal(out, &results[i]); err != nil {
				results[i].Error = "no result: " + string(out)
			}
		})
	}
	wg.Wait()
	return results
}

func count(rs []agentResult, f func(agentResult) bool) (n int) {
	for _, r := range rs {
		if f(r) {
			n++
		}
	}
	return n
}

// B36, B39: 40 Python agents start together through the broker with the
// real limit: 30 get their token, 10 get the SDK's rate-limit error at
// once, and no 429 reaches the Colony. Directly, the same 40 draw 429s.
func TestBrokerHealthyStartPython(t *testing.T) {
	sdk := sdkPath(t)
	bin := buildCLI(t)
	srv := colonyauthtest.NewServer(colonyauthtest.WithRateLimit(30))
	defer srv.Close()
	b := startBroker(t, bin, srv.URL, t.TempDir())

	rs := runSDKAgents(t, sdk, b.URL, newKeys(srv, 40))
	ok := count(rs, func(r agentResult) bool { return r.OK })
	limited := count(rs, func(r agentResult) bool { return r.Error == "ColonyRateLimitError" && r.RetryAfter > 0 })
	// At once: the broker answered each refusal without waiting (the
	// agents' own time is mostly 40 Python start-ups on a small machine).
	fast := 0
	for _, m := range regexp.MustCompile(`status=429 answer=budget duration=(\S+)`).FindAllStringSubmatch(b.out.String(), -1) {
		if d, err := time.ParseDuration(m[1]); err == nil && d < 2*time.Second {
			fast++
		}
	}
	t.Logf("through the broker: %d ok, %d rate-limited (%d at once), %d 429s upstream, %d exchanges", ok, limited, fast, srv.RateLimited(), srv.Exchanges())
	assert.Equal(t, 30, ok)
	assert.Equal(t, 10, limited, "%+v", rs)
	assert.Equal(t, 10, fast, "the rate-limited ones fail at once")
	assert.Zero(t, srv.RateLimited(), "no 429 reaches the Colony")
	assert.Equal(t, 30, srv.Exchanges())
	assert.NotContains(t, b.out.String(), "col_", "no key in the broker's log")

	direct := colonyauthtest.NewServer(colonyauthtest.WithRateLimit(30))
	defer direct.Close()
	rs = runSDKAgents(t, sdk, direct.URL, newKeys(direct, 40))
	t.Logf("directly: %d ok, %d 429s", count(rs, func(r agentResult) bool { return r.OK }), direct.RateLimited())
	assert.Positive(t, direct.RateLimited(), "without the broker the SDK draws 429s")
	b.stop(t)
}

// B36, B21: 25 Python agents start during a 30-second blip of /auth/token:
// all 25 get their token, and only the broker's prober reaches the Colony
// while it is down. Restarted (SDK cache off) behind a restarted broker
// with the same cache directory, they cost no exchange.
func TestBrokerBlipAndRestartPython(t *testing.T) {
	sdk := sdkPath(t)
	bin := buildCLI(t)
	srv := colonyauthtest.NewServer(colonyauthtest.WithRateLimit(30))
	defer srv.Close()
	cache := t.TempDir()
	b := startBroker(t, bin, srv.URL, cache)
	keys := newKeys(srv, 25)

	// For comparison, 25 more agents go straight to a second fake, down
	// for the same 30 s, at the same time.
	direct := colonyauthtest.NewServer(colonyauthtest.WithRateLimit(30))
	defer direct.Close()
	directKeys := newKeys(direct, 25)

	srv.Down(http.StatusBadGateway)
	direct.Down(http.StatusBadGateway)
	start := time.Now()
	const blip = 30 * time.Second
	up := time.AfterFunc(blip, func() { srv.Up(); direct.Up() })
	defer up.Stop()
	var rs, directRs []agentResult
	var wg sync.WaitGroup
	wg.Go(func() { rs = runSDKAgents(t, sdk, b.URL, keys) })
	wg.Go(func() { directRs = runSDKAgents(t, sdk, direct.URL, directKeys) })
	wg.Wait()
	down := func(s *colonyauthtest.Server) (n int) {
		for _, q := range s.Requests() {
			if q.Path == "/auth/token" && q.Time.Before(start.Add(blip)) {
				n++
			}
		}
		return n
	}
	ok := count(rs, func(r agentResult) bool { return r.OK })
	t.Logf("blip through the broker: %d of 25 ok, %d requests while down, %d exchanges in all, %d 429s", ok, down(srv), srv.Exchanges(), srv.RateLimited())
	t.Logf("blip directly: %d of 25 ok, %d requests while down, %d in all, %d 429s",
		count(directRs, func(r agentResult) bool { return r.OK }), down(direct), len(direct.Requests()), direct.RateLimited())
	assert.Equal(t, 25, ok, "%+v", rs)
	assert.LessOrEqual(t, down(srv), 8, "requests while /auth/token is down")
	assert.Zero(t, srv.RateLimited())
	assert.Greater(t, down(direct), 25, "directly, every agent retries against the outage")
	b.stop(t)

	before := srv.Exchanges()
	b = startBroker(t, bin, srv.URL, cache)
	rs = runSDKAgents(t, sdk, b.URL, keys)
	assert.Equal(t, 25, count(rs, func(r agentResult) bool { return r.OK }))
	assert.Equal(t, before, srv.Exchanges(), "the cache directory kept the tokens: no new exchange")
	b.stop(t)
}

// B37 with the SDK: a 2FA key gets its token with the code, and the key
// alone gets the SDK's two-factor error, as it would without the broker.
func TestBrokerTwoFactorPython(t *testing.T) {
	sdk := sdkPath(t)
	bin := buildCLI(t)
	srv := colonyauthtest.NewServer()
	defer srv.Close()
	srv.RequireTOTP("135790")
	b := startBroker(t, bin, srv.URL, t.TempDir())
	rs := runSDKAgents(t, sdk, b.URL, []string{srv.APIKey}, "COLONY_TOTP=135790")
	assert.True(t, rs[0].OK, "%+v", rs[0])
	rs = runSDKAgents(t, sdk, b.URL, []string{srv.APIKey})
	assert.Equal(t, "ColonyTwoFactorRequiredError", rs[0].Error)
	assert.NotContains(t, b.out.String(), "135790", "no code in the log")
	b.stop(t)
}
