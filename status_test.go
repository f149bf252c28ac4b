package colonyauth

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// B41: the host record as an operator reads it: answers in the hour and
// when a slot frees, a 429 hold, an outage (since, tries, next probe,
// prober), keys, and whether coordination works; reading changes nothing.
func TestReadHostStatus(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		cache := NewMemoryCache()
		agents := newHost(srv, 3, cache, WithHostLimit(2))
		start := time.Now()
		mustToken(t, agents[0].src)
		time.Sleep(time.Minute)
		mustToken(t, agents[1].src)
		st := ReadHostStatus(cache, srv.URL, 2, time.Now())
		assert.True(t, st.Coordinating, st.Problem)
		assert.Equal(t, 2, st.Answers)
		assert.WithinDuration(t, start.Add(time.Hour), st.NextSlot, time.Second, "the oldest answer leaves the hour")
		assert.Equal(t, 1, st.Keys, "a key record lives while it holds something: the last minute's exchange")
		assert.True(t, st.OutageSince.IsZero())
		again := ReadHostStatus(cache, srv.URL+"/", 2, time.Now())
		assert.Equal(t, st.Answers, again.Answers, "a trailing slash names the same record")

		srv.FailNext(1, http.StatusTooManyRequests, 10*time.Minute)
		time.Sleep(time.Hour)
		_, err := agents[2].src.Token()
		require.ErrorIs(t, err, ErrRateLimited)
		st = ReadHostStatus(cache, srv.URL, 2, time.Now())
		assert.Equal(t, time.Now().Add(10*time.Minute), st.HoldUntil)

		time.Sleep(10 * time.Minute)
		srv.Down(http.StatusBadGateway)
		down := time.Now()
		go agents[2].src.Token()
		time.Sleep(3 * time.Second) // attempts at 0 and 2 s failed; the next is due at 6 s
		st = ReadHostStatus(cache, srv.URL, 2, time.Now())
		assert.Equal(t, down, st.OutageSince)
		assert.Equal(t, 2, st.Tries)
		assert.Equal(t, down.Add(6*time.Second), st.NextProbe)
		assert.NotEmpty(t, st.Prober)
		assert.Contains(t, st.LastFailure, "Bad Gateway")
		out, err := json.Marshal(st)
		require.NoError(t, err)
		assert.NotContains(t, string(out), srv.APIKey)
		srv.Up()
		time.Sleep(time.Minute)
	})
}

// A refused directory is reported, not an error; a Cache without a Ledger
// says its sources do not coordinate.
func TestReadHostStatusProblems(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o777))
	c, err := NewFileCache(dir)
	require.NoError(t, err)
	st := ReadHostStatus(c, DefaultBaseURL, DefaultHostLimit, time.Now())
	assert.False(t, st.Coordinating)
	assert.Contains(t, st.Problem, "chmod 700")

	missing := filepath.Join(t.TempDir(), "never-used")
	c, err = NewFileCache(missing)
	require.NoError(t, err)
	st = ReadHostStatus(c, DefaultBaseURL, DefaultHostLimit, time.Now())
	assert.Contains(t, st.Problem, "does not exist yet")
	assert.NoDirExists(t, missing, "reading creates nothing")

	st = ReadHostStatus(&stubCache{}, DefaultBaseURL, DefaultHostLimit, time.Now())
	assert.False(t, st.Coordinating)
	assert.Contains(t, st.Problem, "no Ledger")
}
