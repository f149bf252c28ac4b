package colonyauth

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// TestMain lets this test binary act as one agent process of a host for
// TestProcessesShareOneExchange: with COLONYAUTH_AGENT_DIR set it prints a
// token for $COLONYAUTH_AGENT_KEY from $COLONYAUTH_AGENT_URL, sharing the
// cache directory, and exits.
func TestMain(m *testing.M) {
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
