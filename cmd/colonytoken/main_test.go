package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thecolonycc/colonyauth"
	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// runCLI runs the command in-process against srv (served in memory).
func runCLI(t *testing.T, srv *colonyauthtest.Server, envVars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := env{
		getenv: func(k string) string { return envVars[k] },
		stdout: &out,
		stderr: &errOut,
	}
	if srv != nil {
		e.opts = []colonyauth.Option{colonyauth.WithHTTPClient(srv.Client())}
		args = append([]string{"--base-url", srv.URL}, args...)
	}
	code = run(context.Background(), args, e)
	return code, out.String(), errOut.String()
}

func TestPrintsToken(t *testing.T) {
	srv := colonyauthtest.NewUnstarted()
	code, stdout, stderr := runCLI(t, srv, map[string]string{"COLONY_API_KEY": srv.APIKey}, "--no-cache")
	require.Equal(t, exitOK, code, stderr)
	assert.Empty(t, stderr)
	tok := strings.TrimSuffix(stdout, "\n")
	assert.NotContains(t, tok, "\n", "only the token on stdout")
	assert.Equal(t, 3, len(strings.Split(tok, ".")), "a JWT")
	assert.Equal(t, 1, srv.Exchanges())
}

func TestKeyFile(t *testing.T) {
	srv := colonyauthtest.NewUnstarted()
	path := filepath.Join(t.TempDir(), "key")
	require.NoError(t, os.WriteFile(path, []byte(srv.APIKey+"\n"), 0o600))
	code, stdout, stderr := runCLI(t, srv, nil, "--no-cache", "--key-file", path)
	require.Equal(t, exitOK, code, stderr)
	assert.NotEmpty(t, stdout)
}

func TestJSONOutput(t *testing.T) {
	srv := colonyauthtest.NewUnstarted()
	code, stdout, stderr := runCLI(t, srv, map[string]string{"COLONY_API_KEY": srv.APIKey}, "--no-cache", "--json")
	require.Equal(t, exitOK, code, stderr)
	var out struct {
		AccessToken string    `json:"access_token"`
		TokenType   string    `json:"token_type"`
		Expiry      time.Time `json:"expiry"`
		RefreshAt   time.Time `json:"refresh_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &out))
	assert.NotEmpty(t, out.AccessToken)
	assert.Equal(t, "Bearer", out.TokenType)
	assert.WithinDuration(t, time.Now().Add(24*time.Hour), out.Expiry, time.Minute, "the token's real expiry")
	life := time.Until(out.RefreshAt)
	assert.True(t, life >= 24*time.Hour*4/10-time.Minute && life <= 24*time.Hour*6/10, "refresh_at in 40–60 %% of the life: %v", life)
}

// Repeated runs use the file cache and do not call /auth/token again.
func TestCachesBetweenRuns(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", tmp) // os.UserCacheDir on Linux,
	t.Setenv("HOME", tmp)           // macOS
	t.Setenv("LocalAppData", tmp)   // and Windows
	srv := colonyauthtest.NewUnstarted()
	env := map[string]string{"COLONY_API_KEY": srv.APIKey}
	_, first, _ := runCLI(t, srv, env)
	_, second, _ := runCLI(t, srv, env)
	assert.Equal(t, first, second)
	assert.Equal(t, 1, srv.Exchanges())
	_, third, _ := runCLI(t, srv, env, "--no-cache")
	assert.NotEqual(t, first, third)
	assert.Equal(t, 2, srv.Exchanges())
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(*colonyauthtest.Server)
		key    string
		args   []string
		code   int
		stderr string
	}{
		{"no key", nil, "", nil, exitUsage, "COLONY_API_KEY"},
		{"unknown flag", nil, "k", []string{"--key", "col_x"}, exitUsage, "flag provided but not defined"},
		{"stray argument", nil, "k", []string{"col_x"}, exitUsage, "unexpected argument"},
		{"missing key file", nil, "", []string{"--key-file", "/nonexistent/key"}, exitUsage, "--key-file"},
		{"bad base URL", nil, "", []string{"--base-url", "http://thecolony.ai/api/v1"}, exitUsage, "https"},
		{"bad key", nil, "col_wrong", nil, exitRejected, "api key rejected"},
		{"JWT as key", nil, "eyJhbGciOi.e30.x", nil, exitRejected, "JWT"},
		{"2FA required", func(s *colonyauthtest.Server) { s.RequireTOTP("123456") }, "", nil, exitRejected, "two-factor"},
		{"unavailable", func(s *colonyauthtest.Server) { s.Down(http.StatusBadGateway) }, "", nil, exitUnavailable, "unavailable"},
		{"rate limited", func(s *colonyauthtest.Server) { s.FailNext(1, http.StatusTooManyRequests, time.Minute) }, "", nil, exitUnavailable, "rate limited"},
		{"other", func(s *colonyauthtest.Server) { s.FailNext(1, http.StatusInternalServerError, 0) }, "", nil, exitError, "500"},
		{"base URL without /auth/token (404)", func(s *colonyauthtest.Server) { s.FailNext(1, http.StatusNotFound, 0) }, "", nil, exitUsage, "check the base URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := colonyauthtest.NewUnstarted()
			if c.setup != nil {
				c.setup(srv)
			}
			key := c.key
			if key == "" && c.name != "no key" {
				key = srv.APIKey
			}
			var out, errOut bytes.Buffer
			e := env{
				getenv: func(k string) string { return map[string]string{"COLONY_API_KEY": key}[k] },
				stdout: &out, stderr: &errOut,
				opts: []colonyauth.Option{colonyauth.WithHTTPClient(srv.Client()), colonyauth.WithRetry(colonyauth.RetryConfig{})},
			}
			args := append([]string{"--no-cache"}, c.args...)
			if !strings.Contains(strings.Join(args, " "), "--base-url") {
				args = append(args, "--base-url", srv.URL)
			}
			code := run(context.Background(), args, e)
			assert.Equal(t, c.code, code, errOut.String())
			assert.Contains(t, errOut.String(), c.stderr)
			assert.Empty(t, out.String(), "nothing on stdout when failing")
			assert.NotContains(t, errOut.String(), srv.APIKey)
		})
	}
}

func TestHelp(t *testing.T) {
	code, _, stderr := runCLI(t, nil, nil, "--help")
	assert.Equal(t, exitOK, code)
	helpCode, helpOut, helpErr := runCLI(t, nil, nil, "help")
	assert.Equal(t, exitOK, helpCode, "colonytoken help is -h, as in gh")
	assert.Empty(t, helpOut)
	assert.Equal(t, stderr, helpErr)
	for _, want := range []string{"COLONY_API_KEY", "--key-file", "-json", "-no-cache", "-totp-command", "COLONY_TOTP_COMMAND",
		"Exit codes: 0 ok, 1 other error, 2 usage", "empty or unreadable\n--key-file", "3 credentials rejected", "4 unavailable", "130 interrupted", "143 terminated"} {
		assert.Contains(t, stderr, want)
	}
}

// -v logs each retry to stderr and ends with one line saying where the
// token came from; stdout still has only the token.
func TestVerbose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		srv.FailNext(1, http.StatusServiceUnavailable, 0)
		code, stdout, stderr := runCLI(t, srv, map[string]string{"COLONY_API_KEY": srv.APIKey}, "--no-cache", "-v")
		require.Equal(t, exitOK, code)
		assert.Contains(t, stderr, "level=WARN")
		assert.Contains(t, stderr, "attempt=1 status=503")
		assert.Contains(t, stderr, "delay=2s")
		assert.Contains(t, stderr, "colonytoken: exchanged in 2s\n")
		assert.Equal(t, 1, strings.Count(stdout, "\n"))
	})
	t.Run("all well", func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		cache := t.TempDir()
		keyEnv := map[string]string{"COLONY_API_KEY": srv.APIKey}
		t.Setenv("XDG_CACHE_HOME", cache)
		t.Setenv("HOME", cache)
		code, _, stderr := runWith(t, context.Background(), srv, keyEnv, nil, "+cache", "-v")
		require.Equal(t, exitOK, code, stderr)
		assert.Regexp(t, `^colonytoken: exchanged in \d+(\.\d+)?m?s\n$`, stderr, "one line, not silence")
		code, _, stderr = runWith(t, context.Background(), srv, keyEnv, nil, "+cache", "-v")
		require.Equal(t, exitOK, code, stderr)
		assert.Regexp(t, `^colonytoken: token from the cache, refresh at \d{4}-\d\d-\d\dT`, stderr)
		assert.Equal(t, 1, srv.Exchanges())
	})
}

// --version prints the build's version on stdout.
func TestVersion(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, nil, "--version")
	assert.Equal(t, exitOK, code, stderr)
	assert.Regexp(t, `^colonytoken \S+ go1\.\d+`, stdout)
}

// The demo prints three failed attempts with their delays, then a 200.
func TestDemo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		code, stdout, stderr := runCLI(t, nil, nil, "demo")
		require.Equal(t, exitOK, code, stderr)
		for i, delay := range []string{"200ms", "400ms", "800ms"} {
			assert.Contains(t, stdout, "attempt="+string(rune('1'+i))+" status=502 error=\"Bad Gateway\" delay="+delay)
		}
		assert.Contains(t, stdout, "token after 4 exchanges in 1.4s")
		assert.Contains(t, stdout, `GET /users/me: 200 OK {"id":"agent-1","username":"test-agent"}`)
	})
}

// runWith runs the CLI against srv with the given environment and signal.
func runWith(t *testing.T, ctx context.Context, srv *colonyauthtest.Server, envVars map[string]string, sig os.Signal, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := env{
		getenv: func(k string) string { return envVars[k] },
		stdout: &out, stderr: &errOut,
		signal: func() os.Signal { return sig },
		opts:   []colonyauth.Option{colonyauth.WithHTTPClient(srv.Client())},
	}
	base := []string{"--base-url", srv.URL, "--no-cache"}
	if len(args) > 0 && args[0] == "+cache" { // this test uses the file cache
		base, args = base[:2], args[1:]
	}
	code = run(ctx, append(base, args...), e)
	return code, out.String(), errOut.String()
}

// --totp-command: run with sh -c for each attempt; its trimmed stdout is the
// code, its stderr passes through; the code is never echoed; a failing
// command is exit 3 with a clear message, a hanging one is cut off.
func TestTOTPCommand(t *testing.T) {
	srv := colonyauthtest.NewUnstarted()
	srv.RequireTOTP("246810")
	keyEnv := map[string]string{"COLONY_API_KEY": srv.APIKey}
	code, stdout, stderr := runWith(t, context.Background(), srv, keyEnv, nil, "--totp-command", "echo 246810; echo note >&2")
	require.Equal(t, exitOK, code, stderr)
	assert.NotEmpty(t, stdout)
	assert.Contains(t, stderr, "note", "stderr passes through")
	assert.NotContains(t, stderr, "246810", "the code is never echoed")

	srv2 := colonyauthtest.NewUnstarted()
	srv2.RequireTOTP("135791")
	env2 := map[string]string{"COLONY_API_KEY": srv2.APIKey, "COLONY_TOTP_COMMAND": "printf '135791\\n'"}
	code, _, stderr = runWith(t, context.Background(), srv2, env2, nil)
	assert.Equal(t, exitOK, code, "from $COLONY_TOTP_COMMAND: %s", stderr)

	code, stdout, stderr = runWith(t, context.Background(), srv, keyEnv, nil, "--totp-command", "exit 3")
	assert.Equal(t, exitRejected, code)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "--totp-command failed: exit status 3")

	code, _, stderr = runWith(t, context.Background(), srv, keyEnv, nil)
	assert.Equal(t, exitRejected, code)
	assert.Contains(t, stderr, "--totp-command", "the hint names the flag, not the Go option")
	assert.NotContains(t, stderr, "WithTOTP")

	defer func(d time.Duration) { totpTimeout = d }(totpTimeout)
	totpTimeout = 200 * time.Millisecond // a real process: no fake clock reaches it
	code, _, stderr = runWith(t, context.Background(), srv, keyEnv, nil, "--totp-command", "sleep 60")
	assert.Equal(t, exitRejected, code, stderr)
	assert.Contains(t, stderr, "no code after 200ms")
}

// The key from $COLONY_API_KEY is trimmed like the key file's; an empty key
// file has its own message; a key file others can read draws a warning.
func TestKeyInput(t *testing.T) {
	srv := colonyauthtest.NewUnstarted()
	code, stdout, stderr := runWith(t, context.Background(), srv, map[string]string{"COLONY_API_KEY": srv.APIKey + "\n"}, nil)
	require.Equal(t, exitOK, code, stderr)
	assert.NotEmpty(t, stdout)

	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	code, _, stderr = runWith(t, context.Background(), srv, nil, nil, "--key-file", empty)
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, "--key-file "+empty+" is empty")
	assert.NotContains(t, stderr, "set COLONY_API_KEY")

	open := filepath.Join(dir, "open")
	require.NoError(t, os.WriteFile(open, []byte(srv.APIKey), 0o644))
	code, _, stderr = runWith(t, context.Background(), srv, nil, nil, "--key-file", open)
	assert.Equal(t, exitOK, code, "a warning, not a refusal")
	assert.Contains(t, stderr, "readable by others")
	assert.NotContains(t, stderr, srv.APIKey)
}

// Ctrl-C mid-retry exits 130 with "interrupted" (SIGTERM 143), nothing on
// stdout; while retrying, one stderr line says so without -v.
func TestInterruptAndProgress(t *testing.T) {
	for _, c := range []struct {
		sig  os.Signal
		code int
	}{{os.Interrupt, exitInterrupted}, {syscall.SIGTERM, exitTerminated}} {
		synctest.Test(t, func(t *testing.T) {
			srv := colonyauthtest.NewUnstarted()
			srv.Down(http.StatusBadGateway)
			ctx, cancel := context.WithCancel(context.Background())
			go func() { time.Sleep(5 * time.Second); cancel() }()
			code, stdout, stderr := runWith(t, ctx, srv, map[string]string{"COLONY_API_KEY": srv.APIKey}, c.sig)
			assert.Equal(t, c.code, code)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, "colonytoken: interrupted")
			assert.Equal(t, 1, strings.Count(stderr, "retrying for up to 2m2s (Ctrl-C stops"), stderr)
			assert.Contains(t, stderr, "answered 502")
			assert.NotContains(t, stderr, "context canceled")
		})
	}
}

// Messages lead with the HTTP status, and durations are rounded.
func TestMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		proxy := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 502, Status: "502 Bad Gateway", Header: http.Header{"Content-Type": {"text/plain"}},
				Body: io.NopCloser(strings.NewReader("upstream down")), Request: r}, nil
		})}
		var out, errOut bytes.Buffer
		e := env{getenv: envMap{"COLONY_API_KEY": srv.APIKey}.get, stdout: &out, stderr: &errOut,
			opts: []colonyauth.Option{colonyauth.WithHTTPClient(proxy), colonyauth.WithRetry(colonyauth.RetryConfig{})}}
		code := run(context.Background(), []string{"--base-url", srv.URL, "--no-cache"}, e)
		assert.Equal(t, exitUnavailable, code)
		assert.Contains(t, errOut.String(), ": 502 Bad Gateway: the answer is text/plain, not JSON")
		assert.Contains(t, errOut.String(), "try again in 30s (")
	})
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type envMap map[string]string

func (m envMap) get(k string) string { return m[k] }

// B6 in the CLI: a cached token past its refresh point is refreshed before
// it is printed (with 40 s tokens, a run 25 s later prints a new token whose
// expiry is ahead), so a short-lived process refreshes too.
func TestRefreshesCachedToken(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", tmp)
	t.Setenv("HOME", tmp)
	t.Setenv("LocalAppData", tmp)
	synctest.Test(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted(colonyauthtest.WithLifetime(40 * time.Second))
		keyEnv := map[string]string{"COLONY_API_KEY": srv.APIKey}
		code, first, stderr := runWith(t, context.Background(), srv, keyEnv, nil, "+cache", "--json")
		require.Equal(t, exitOK, code, stderr)
		code, again, _ := runWith(t, context.Background(), srv, keyEnv, nil, "+cache", "--json")
		require.Equal(t, exitOK, code)
		assert.Equal(t, first, again, "before the refresh point the cached token is printed")
		time.Sleep(25 * time.Second)
		code, second, stderr := runWith(t, context.Background(), srv, keyEnv, nil, "+cache", "--json")
		require.Equal(t, exitOK, code, stderr)
		var a, b struct {
			AccessToken string    `json:"access_token"`
			Expiry      time.Time `json:"expiry"`
		}
		require.NoError(t, json.Unmarshal([]byte(first), &a))
		require.NoError(t, json.Unmarshal([]byte(second), &b))
		assert.NotEqual(t, a.AccessToken, b.AccessToken, "refreshed before printing")
		assert.True(t, b.Expiry.After(time.Now().Add(30*time.Second)), "a fresh expiry: %v", b.Expiry)
		assert.Equal(t, 2, srv.Exchanges())
	})
}
