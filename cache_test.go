package colonyauth

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// B12: a second source (a second run of a program) with the same cache
// directory reuses the token instead of exchanging the key again.
func TestFileCacheReusesToken(t *testing.T) {
	bubble(t, func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "cache")
		srv := colonyauthtest.NewUnstarted()
		newSource := func() *TokenSource {
			return New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithFileCache(dir))
		}
		first := mustToken(t, newSource())
		time.Sleep(time.Hour)
		second := mustToken(t, newSource())
		assert.Equal(t, first.AccessToken, second.AccessToken)
		assert.Equal(t, 1, srv.Exchanges())
		assert.Equal(t, first.Expiry, second.Expiry, "the cached token keeps its half-life (from the JWT iat)")

		info, err := os.Stat(dir)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o700), info.Mode().Perm())
		all, err := os.ReadDir(dir)
		require.NoError(t, err)
		var entries []os.DirEntry
		for _, e := range all {
			assert.False(t, strings.HasPrefix(e.Name(), ".tmp"), "no temporary files left behind")
			info, err := e.Info()
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), e.Name())
			if strings.HasSuffix(e.Name(), ".json") {
				entries = append(entries, e)
			}
		}
		require.Len(t, entries, 1, "one token entry")
		name := entries[0].Name()
		data, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		assert.NotContains(t, name, srv.APIKey)
		assert.NotContains(t, string(data), srv.APIKey)
		assert.Equal(t, cacheKey(srv.URL, srv.APIKey)+".json", name)
		assert.NotEqual(t, cacheKey(srv.URL, srv.APIKey), cacheKey(srv.URL, srv.APIKey+"x"), "each key its own entry")
		assert.NotEqual(t, cacheKey(srv.URL, srv.APIKey), cacheKey(DefaultBaseURL, srv.APIKey), "each base URL its own entry")
	})
}

// B12: a cached token past its half-life is served while a refresh runs
// (and stores its result), and an expired one is ignored.
func TestFileCacheAges(t *testing.T) {
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		srv := colonyauthtest.NewUnstarted()
		newSource := func() *TokenSource {
			return New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithFileCache(dir))
		}
		first := mustToken(t, newSource())
		time.Sleep(15 * time.Hour) // past the refresh point (at most 60 % of 24 h)
		second := mustToken(t, newSource())
		assert.NotEqual(t, first.AccessToken, second.AccessToken, "B6: a cached token past its refresh point is refreshed before the call returns")
		assert.Equal(t, 2, srv.Exchanges())

		time.Sleep(9 * time.Hour)
		assert.Equal(t, second.AccessToken, mustToken(t, newSource()).AccessToken, "the refreshed token was cached")
		assert.Equal(t, 2, srv.Exchanges())

		time.Sleep(30 * time.Hour)
		third := mustToken(t, newSource())
		assert.NotEqual(t, second.AccessToken, third.AccessToken, "an expired entry is ignored")
		assert.Equal(t, 3, srv.Exchanges())
	})
}

// B12: Invalidate deletes the entry, so the next run does not load a token
// the API rejected.
func TestFileCacheInvalidate(t *testing.T) {
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		srv := colonyauthtest.NewUnstarted()
		s := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithFileCache(dir))
		s.Invalidate(mustToken(t, s))
		assert.Empty(t, tokenFiles(t, dir))
	})
}

// B12: a missing, unreadable, corrupt or expired entry is ignored (logged at
// Debug), never an error.
func TestFileCacheBadEntries(t *testing.T) {
	for name, content := range map[string]string{
		"corrupt":      "{not json",
		"empty":        "",
		"no token":     `{"expiry":"2100-01-01T00:00:00Z"}`,
		"expired":      `{"access_token":"old","expiry":"1999-01-01T00:00:00Z"}`,
		"is directory": "",
	} {
		t.Run(name, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				dir := t.TempDir()
				srv := colonyauthtest.NewUnstarted()
				path := filepath.Join(dir, cacheKey(srv.URL, srv.APIKey)+".json")
				if name == "is directory" {
					require.NoError(t, os.Mkdir(path, 0o700))
				} else {
					require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
				}
				var logs logBuffer
				s := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithFileCache(dir), WithLogger(logs.logger()))
				tok := mustToken(t, s)
				assert.NotEqual(t, "old", tok.AccessToken)
				assert.Equal(t, 1, srv.Exchanges())
				assert.Contains(t, logs.String(), "level=DEBUG")
				assert.NotContains(t, logs.String(), srv.APIKey)
			})
		})
	}
}

// B12: processes sharing the directory never see half a file: every read
// during concurrent writes is a whole entry.
func TestFileCacheConcurrentWriters(t *testing.T) {
	c := fileCache{dir: t.TempDir()}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				tok := &oauth2.Token{AccessToken: strings.Repeat(string(rune('a'+i)), 1000+j), Expiry: time.Unix(4e9, 0)}
				assert.NoError(t, c.Store("k", tok))
				got, err := c.Load("k")
				assert.NoError(t, err)
				assert.NotNil(t, got)
			}
		})
	}
	wg.Wait()
	entries, _ := os.ReadDir(c.dir)
	assert.Len(t, entries, 1)
	got, err := c.Load("k")
	require.NoError(t, err)
	assert.Len(t, strings.Trim(got.AccessToken, got.AccessToken[:1]), 0, "one writer's whole token")
	missing, err := c.Load("absent")
	assert.NoError(t, err)
	assert.Nil(t, missing)
	assert.NoError(t, c.Delete("absent"))
}

// stubCache is a Cache that fails every call.
type stubCache struct{ calls []string }

func (c *stubCache) Load(key string) (*oauth2.Token, error) {
	c.calls = append(c.calls, "load")
	return nil, os.ErrPermission
}
func (c *stubCache) Store(key string, tok *oauth2.Token) error {
	c.calls = append(c.calls, "store")
	return os.ErrPermission
}
func (c *stubCache) Delete(key string) error {
	c.calls = append(c.calls, "delete")
	return os.ErrPermission
}

// B12: WithCache takes any Cache; its errors never fail the source, and it
// is read once, before the first exchange.
func TestWithCacheErrorsIgnored(t *testing.T) {
	bubble(t, func(t *testing.T) {
		c := &stubCache{}
		srv, s := newFake(t, WithCache(c))
		tok := mustToken(t, s)
		mustToken(t, s)
		s.Invalidate(tok)
		assert.Equal(t, []string{"load", "store", "delete"}, c.calls)
		assert.Equal(t, 1, srv.Exchanges())
	})
}

// WithFileCache("") uses os.UserCacheDir()/colonyauth.
func TestFileCacheDefaultDir(t *testing.T) {
	home := useTempCacheDir(t)
	hc := handlerClient(func(w http.ResponseWriter, r *http.Request) { answer(w, 200, `{"access_token":"t"}`) })
	// A cancellable context makes the exchange run in its own goroutine: the
	// entry must still be written before the caller gets the token, since a
	// command-line program may exit right after.
	ctx, cancel := context.WithCancel(background)
	defer cancel()
	_, err := New(testKey, WithHTTPClient(hc), WithFileCache("")).TokenContext(ctx)
	require.NoError(t, err)
	entries := tokenFiles(t, filepath.Join(home, "colonyauth"))
	require.Len(t, entries, 1)
	data, _ := os.ReadFile(entries[0])
	var e map[string]any
	require.NoError(t, json.Unmarshal(data, &e))
	assert.Equal(t, "t", e["access_token"])
}

// useTempCacheDir points os.UserCacheDir at a temporary directory, on every
// system, and returns it.
func useTempCacheDir(t *testing.T) string {
	tmp := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", tmp) // Linux and other Unix
	t.Setenv("HOME", tmp)           // macOS: $HOME/Library/Caches
	t.Setenv("LocalAppData", tmp)   // Windows
	dir, err := os.UserCacheDir()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(dir, tmp), dir)
	return dir
}

// tokenFiles lists the token entries of a cache directory (not its ledger
// record or lock file).
func tokenFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	require.NoError(t, err)
	return names
}
