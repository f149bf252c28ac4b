package colonyauth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// TestMain lets this test binary act as one agent process of a host for
// TestProcessesShareOneExchange: with COLONYAUTH_AGENT_DIR set it prints a
// token for $COLONYAUTH_AGENT_KEY from $COLONYAUTH_AGENT_URL, sharing the
// cache directory, and exits.
func TestMain(m *testing.M) {
	if dir := os.Getenv("COLONYAUTH_LOCK_HOLDER"); dir != "" { // TestFrozenLockHolder's helper
		if _, err := lockFile(filepath.Join(dir, ".lock"), time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {} // until stopped and killed
	}
	if dir := os.Getenv("COLONYAUTH_AGENT_DIR"); dir != "" {
		src := New(os.Getenv("COLONYAUTH_AGENT_KEY"), WithBaseURL(os.Getenv("COLONYAUTH_AGENT_URL")), WithFileCache(dir))
		tok, err := src.Token()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(tok.AccessToken)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// B22 with real processes: 8 processes with the same key and cache
// directory, started together against one server on loopback, make one
// exchange between them and print the same token.
func TestProcessesShareOneExchange(t *testing.T) {
	srv := colonyauthtest.NewServer()
	defer srv.Close()
	srv.SetLatency(300 * time.Millisecond) // so that the processes overlap
	dir := t.TempDir()

	const n = 8
	out := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "COLONYAUTH_AGENT_DIR="+dir, "COLONYAUTH_AGENT_KEY="+srv.APIKey, "COLONYAUTH_AGENT_URL="+srv.URL)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			assert.NoError(t, cmd.Run(), "process %d: %s", i, stderr.String())
			out[i] = strings.TrimSpace(stdout.String())
		})
	}
	wg.Wait()
	require.NotEmpty(t, out[0])
	for i := range out {
		assert.Equal(t, out[0], out[i], "process %d", i)
	}
	assert.Equal(t, 1, srv.Exchanges(), "one exchange between %d processes", n)
	t.Logf("%d processes, %d exchange", n, srv.Exchanges())
}

// B32 with a real process: a process that holds the cache directory's lock
// and is then frozen (SIGSTOP: a debugger, a paused container) costs
// another process's Token at most the 1 s lock wait: it acts alone for
// that attempt and says so; a cached token past its refresh point (the
// CLI's case) is served too.
func TestFrozenLockHolder(t *testing.T) {
	dir := t.TempDir()
	holder := exec.Command(os.Args[0], "-test.run=^$")
	holder.Env = append(os.Environ(), "COLONYAUTH_LOCK_HOLDER="+dir)
	out, err := holder.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, holder.Start())
	defer func() { holder.Process.Kill(); holder.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "locked\n", line)
	require.NoError(t, holder.Process.Signal(syscall.SIGSTOP))

	srv := colonyauthtest.NewServer()
	defer srv.Close()
	within := func(what string, d time.Duration, f func() error) {
		t.Helper()
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- f() }()
		select {
		case err := <-done:
			assert.NoError(t, err, what)
			assert.Less(t, time.Since(start), d, what)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still blocked after 10 s", what)
		}
	}
	var logs logBuffer
	s := New(srv.APIKey, WithBaseURL(srv.URL), WithFileCache(dir), WithLogger(logs.logger()))
	within("an exchange with a 2 s deadline", 2*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := s.TokenContext(ctx)
		return err
	})
	require.Error(t, s.Alone())
	assert.Contains(t, s.Alone().Error(), "held by another process")
	assert.Equal(t, 1, countLines(logs.String(), "acting alone"))

	key := srv.NewKey()
	old, exp := fakeAged(time.Now(), 14*time.Hour, 1)
	require.NoError(t, fileCache{dir: dir}.Store(cacheKey(srv.URL, key), &oauth2.Token{AccessToken: old, Expiry: exp}))
	cli := New(key, WithBaseURL(srv.URL), WithFileCache(dir))
	within("a cached token past its refresh point", 3*time.Second, func() error {
		tok, err := cli.Token()
		if err == nil && tok.AccessToken == "" {
			err = errors.New("no token")
		}
		return err
	})
}
