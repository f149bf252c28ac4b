package colonyauth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/oauth2"
)

// Cache keeps tokens between runs of a program, so that a short-lived
// command does not exchange its key on every start. Implementations must be
// safe for concurrent use. The key is an opaque hash of the base URL and
// the API key; the API key itself is never passed to a Cache.
//
// Errors from a Cache are logged at Debug and otherwise ignored: a cache
// can make the source faster, never make it fail.
type Cache interface {
	Load(key string) (*oauth2.Token, error) // (nil, nil) when absent
	Store(key string, tok *oauth2.Token) error
	Delete(key string) error
}

// WithCache loads a still-valid token from c before any exchange, stores
// each new token in it, and deletes the entry on Invalidate.
func WithCache(c Cache) Option {
	return func(o *options) {
		if c == nil {
			o.fail("invalid option: WithCache(nil)")
			return
		}
		o.cache = c
	}
}

// WithFileCache is WithCache with a cache of files in dir, so that tokens
// outlive the process; "" means os.UserCacheDir()/colonyauth. The directory
// is created 0700, each entry is a 0600 file named by a hash of the base URL
// and key (the key is in no name or file), written atomically so processes
// can share the directory. If there is no user cache directory the source
// works without a cache.
func WithFileCache(dir string) Option {
	return func(o *options) {
		if dir == "" {
			base, err := os.UserCacheDir()
			if err != nil {
				return
			}
			dir = filepath.Join(base, "colonyauth")
		}
		o.cache = fileCache(dir)
	}
}

// fileCache is a Cache of one JSON file per entry in a directory. The
// directory is created with mode 0700 and files with 0600; each file is
// written to a temporary name and renamed, so processes sharing the
// directory never read half a file. File names are the hashed keys.
type fileCache string

type cacheEntry struct {
	AccessToken string    `json:"access_token"`
	Expiry      time.Time `json:"expiry"`
}

func (d fileCache) path(key string) string { return filepath.Join(string(d), key+".json") }

// Load returns the token stored under key, or (nil, nil) if there is none.
func (d fileCache) Load(key string) (*oauth2.Token, error) {
	data, err := os.ReadFile(d.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e cacheEntry
	if err := json.Unmarshal(data, &e); err != nil || e.AccessToken == "" {
		return nil, errors.New("colonyauth: corrupt cache entry")
	}
	return &oauth2.Token{AccessToken: e.AccessToken, TokenType: "Bearer", Expiry: e.Expiry}, nil
}

// Store writes tok under key atomically.
func (d fileCache) Store(key string, tok *oauth2.Token) error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(cacheEntry{AccessToken: tok.AccessToken, Expiry: tok.Expiry})
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(string(d), ".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), d.path(key))
}

// Delete removes the entry under key; a missing entry is not an error.
func (d fileCache) Delete(key string) error {
	err := os.Remove(d.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// cacheKey names a cache entry without revealing the key.
func cacheKey(baseURL, apiKey string) string {
	sum := sha256.Sum256([]byte("colonyauth\x00" + baseURL + "\x00" + apiKey))
	return hex.EncodeToString(sum[:16])
}

// loadCache reads the cache once, before the first exchange; s.mu is held.
func (s *TokenSource) loadCache() {
	if s.cache == nil || s.cacheLoaded {
		return
	}
	s.cacheLoaded = true
	tok, err := s.cache.Load(s.cacheKey)
	if err != nil || tok == nil {
		if err != nil {
			s.log.Debug("colonyauth: ignoring token cache", "error", s.red.message(err.Error()))
		}
		return
	}
	now := s.clock.Now()
	exp, iat, ok := jwtClaims(tok.AccessToken)
	if !ok {
		exp = tok.Expiry
	}
	if iat.IsZero() || iat.After(now) {
		iat = now // unknown age: refresh half-way through what is left
	}
	if tok.AccessToken == "" || !exp.After(now) {
		s.log.Debug("colonyauth: ignoring expired cached token")
		return
	}
	if st := newState(tok.AccessToken, iat, exp); now.Before(st.expires) {
		s.cur.Store(st)
		s.log.Debug("colonyauth: token loaded from cache", "expires", exp)
		return
	}
	s.log.Debug("colonyauth: ignoring expired cached token")
}

func (s *TokenSource) storeCache(st *state) {
	if s.cache == nil {
		return
	}
	tok := &oauth2.Token{AccessToken: st.tok.AccessToken, TokenType: "Bearer", Expiry: st.exp}
	if err := s.cache.Store(s.cacheKey, tok); err != nil {
		s.log.Debug("colonyauth: cannot store token in cache", "error", s.red.message(err.Error()))
	}
}

func (s *TokenSource) deleteCache() {
	if s.cache == nil {
		return
	}
	if err := s.cache.Delete(s.cacheKey); err != nil {
		s.log.Debug("colonyauth: cannot delete cached token", "error", s.red.message(err.Error()))
	}
}
