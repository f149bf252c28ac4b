package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thecolonycc/colonyauth"
	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// buildCLI builds colonytoken once for the tests that run it as real
// processes.
func buildCLI(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "colonytoken")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// B21 with real processes: 40 colonytoken processes, 40 keys, one cache
// directory, started while /auth/token answers 502 for 12 s. One probes;
// the others wait for its attempts (and say so) instead of failing at
// once; when the endpoint is back, 30 print a token and 10 exit 4 at once
// with the host's budget spent. No 429 reaches the server, and only the
// prober's attempts reach it while it is down.
func TestProcessesRideABlipTogether(t *testing.T) {
	bin := buildCLI(t)
	srv := colonyauthtest.NewServer(colonyauthtest.WithRateLimit(30))
	defer srv.Close()
	cache := t.TempDir()
	srv.Down(http.StatusBadGateway)
	start := time.Now()
	const blip = 12 * time.Second
	up := time.AfterFunc(blip, srv.Up)
	defer up.Stop()

	const n = 40
	type result struct {
		code           int
		stdout, stderr string
		took           time.Duration
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		key := srv.NewKey()
		wg.Go(func() {
			cmd := exec.Command(bin)
			cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+cache, "HOME="+cache, "COLONY_API_KEY="+key, "COLONY_BASE_URL="+srv.URL)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			began := time.Now()
			err := cmd.Run()
			var exit *exec.ExitError
			code := 0
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				code = -1
			}
			results[i] = result{code, stdout.String(), stderr.String(), time.Since(began)}
		})
	}
	wg.Wait()

	var ok, limited, waited int
	for i, r := range results {
		switch r.code {
		case exitOK:
			ok++
			assert.Equal(t, 3, len(strings.Split(strings.TrimSpace(r.stdout), ".")), "process %d prints a JWT", i)
		case exitUnavailable:
			limited++
			assert.Contains(t, r.stderr, "budget", "process %d: %s", i, r.stderr)
			assert.Empty(t, r.stdout)
		default:
			t.Errorf("process %d exited %d: %s", i, r.code, r.stderr)
		}
		if strings.Contains(r.stderr, "waiting for another process's attempts for up to") {
			waited++
		}
		assert.Greater(t, r.took, blip-time.Second, "process %d waited for the endpoint to come back", i)
	}
	var down int
	for _, q := range srv.Requests() {
		if q.Path == "/auth/token" && q.Time.Before(start.Add(blip)) {
			down++
		}
	}
	t.Logf("%d printed a token, %d exited 4 (budget spent), %d said they wait; %d requests while down, %d 429s", ok, limited, waited, down, srv.RateLimited())
	assert.Equal(t, 30, ok, "the hour's 30")
	assert.Equal(t, 10, limited)
	assert.GreaterOrEqual(t, waited, n-2, "the others said they wait for the prober")
	assert.LessOrEqual(t, down, 8, "requests while the endpoint is down")
	assert.Zero(t, srv.RateLimited(), "no 429")
}

// The progress line says the CLI waits for another process's attempts, and
// for how long at most (B21).
func TestProgressWhileAnotherProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		srv.Down(http.StatusBadGateway)
		cache := t.TempDir()
		t.Setenv("XDG_CACHE_HOME", cache)
		t.Setenv("HOME", cache)
		dir, err := os.UserCacheDir()
		require.NoError(t, err)
		prober := colonyauth.New(srv.NewKey(), colonyauth.WithBaseURL(srv.URL), colonyauth.WithHTTPClient(srv.Client()),
			colonyauth.WithFileCache(filepath.Join(dir, "colonyauth")))
		go prober.Token()
		time.Sleep(time.Second) // its first attempt failed; it sleeps 2 s
		go func() { time.Sleep(20 * time.Second); srv.Up() }()
		code, stdout, stderr := runWith(t, context.Background(), srv, map[string]string{"COLONY_API_KEY": srv.APIKey}, nil, "+cache")
		assert.Equal(t, exitOK, code, stderr)
		assert.NotEmpty(t, stdout)
		assert.Contains(t, stderr, "waiting for another process's attempts for up to 2m2s")
		assert.Equal(t, 1, strings.Count(stderr, "colonytoken:"), "one line: %s", stderr)
		assert.Equal(t, 6, srv.Exchanges(), "the prober's 5 attempts and this process's exchange, nothing else")
	})
}

// --totp-command runs without $COLONY_API_KEY, and its stderr is redacted
// (B34).
func TestTOTPCommandSeesNoKey(t *testing.T) {
	srv := colonyauthtest.NewUnstarted()
	srv.RequireTOTP("246810")
	t.Setenv("COLONY_API_KEY", srv.APIKey) // as a real process would have it
	code, _, stderr := runWith(t, context.Background(), srv, map[string]string{"COLONY_API_KEY": srv.APIKey}, nil,
		"--no-cache", "--totp-command", `echo 246810; echo "key=[$COLONY_API_KEY]" >&2; echo "leak `+srv.APIKey+` tail" >&2; printf "half %s" "`+srv.APIKey[:10]+`" >&2`)
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, stderr, "key=[]", "the command's environment has no key")
	assert.Contains(t, stderr, "leak [REDACTED] tail")
	assert.Contains(t, stderr, "half [REDACTED]", "an echo of the key's start, even on an unfinished last line")
	assert.NotContains(t, stderr, srv.APIKey[:8])
}
