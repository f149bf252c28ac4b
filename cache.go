package colonyauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/oauth2"
)

// Cache keeps tokens between runs of a program, so that a short-lived
// command does not exchange its key on every start. Implementations must be
// safe for concurrent use. The key is an opaque hash of the base URL and
// the API key; the API key itself is never passed to a Cache.
//
// Errors from a Cache are logged at Debug and otherwise ignored: a cache
// can make the source faster, never make it fail. A token loaded from a
// Cache gets every check an exchanged one gets (header-safe characters, an
// expiry at most 366 days away), so a cache cannot smuggle in a token that
// an exchange would refuse.
//
// A Cache that also implements Ledger lets the sources sharing it
// coordinate their use of /auth/token (see Ledger).
type Cache interface {
	Load(key string) (*oauth2.Token, error) // (nil, nil) when absent
	Store(key string, tok *oauth2.Token) error
	Delete(key string) error
}

// WithCache loads a still-valid token from c before any exchange, stores
// each new token in it, and deletes the entry on Invalidate. If c is also a
// Ledger, the source coordinates with the other sources sharing it.
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
// outlive the process and the processes of a host coordinate through it
// (it is a Ledger too: share one directory per host). "" means
// os.UserCacheDir()/colonyauth; without a user cache directory the source
// works without a cache.
//
// The directory is created 0700; each entry is a 0600 file named by a hash
// of the base URL and key (the key is in no name or file), written
// atomically. A directory that is group- or world-writable or owned by
// another user is refused (logged at Debug; the source works without it),
// and only regular files of at most 64 KiB are read.
func WithFileCache(dir string) Option {
	return func(o *options) {
		if c, err := NewFileCache(dir); err == nil {
			o.cache = c
		}
	}
}

// NewFileCache returns the Cache (and Ledger) that WithFileCache uses, for
// dir ("" is os.UserCacheDir()/colonyauth), so that it can be wrapped: a
// Cache that shares the host's record through the directory but keeps its
// tokens elsewhere, as the host broker does for two-factor requests. The
// error is that of os.UserCacheDir; the directory itself is checked on use.
func NewFileCache(dir string) (Cache, error) {
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, err
		}
		dir = filepath.Join(base, "colonyauth")
	}
	return fileCache{dir: dir}, nil
}

// NewMemoryCache returns a Cache and Ledger in memory, for the sources of
// one process: they share tokens and coordinate as sources sharing a cache
// directory do, without touching the disk.
func NewMemoryCache() Cache { return &memoryCache{} }

type memoryCache struct {
	memoryLedger
	mu     sync.Mutex
	tokens map[string]oauth2.Token
}

// String describes the cache without its tokens, so that no %v, %+v
// (slog.Any included) or %#v of it prints one (B34).
func (m *memoryCache) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("colonyauth.MemoryCache(%d tokens)", len(m.tokens))
}

// GoString is String, for %#v.
func (m *memoryCache) GoString() string { return m.String() }

// Load returns a copy of the token stored under key, or (nil, nil).
func (m *memoryCache) Load(key string) (*oauth2.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	tok, ok := m.tokens[key]
	if !ok {
		return nil, nil
	}
	return &tok, nil
}

// Store keeps a copy of tok under key.
func (m *memoryCache) Store(key string, tok *oauth2.Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tokens == nil {
		m.tokens = map[string]oauth2.Token{}
	}
	m.tokens[key] = oauth2.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Expiry: tok.Expiry}
	return nil
}

// Delete forgets the token under key.
func (m *memoryCache) Delete(key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.tokens, key)
	return nil
}

// cacheKey names a cache entry without revealing the key.
func cacheKey(baseURL, apiKey string) string {
	sum := sha256.Sum256([]byte("colonyauth\x00" + baseURL + "\x00" + apiKey))
	return hex.EncodeToString(sum[:16])
}

// cacheLoad is the one read of the cache before the first exchange.
type cacheLoad struct {
	done   chan struct{}
	loaded bool   // it made a token current
	err    *Error // the Cache panicked
}

// loadCache reads the cache once, before the first exchange, for all the
// callers that arrive meanwhile. The read runs outside the source's mutex
// and each caller waits for it only while its ctx lasts, so a slow Cache
// cannot make callers ignore their deadlines (B32). It reports whether the
// read made a token current, and a panic of the Cache.
func (s *TokenSource) loadCache(ctx context.Context) (bool, *Error) {
	if s.cache == nil {
		return false, nil
	}
	s.mu.Lock()
	if s.cacheLoaded {
		s.mu.Unlock()
		return false, nil
	}
	l := s.loading
	if l == nil {
		l = &cacheLoad{done: make(chan struct{})}
		s.loading = l
		go s.readCache(l)
	}
	s.mu.Unlock()
	select {
	case <-l.done:
		return l.loaded, l.err
	case <-ctx.Done():
		return false, &Error{Message: "gave up waiting for the token cache", Err: ctx.Err()}
	}
}

// readCache carries out a cacheLoad.
func (s *TokenSource) readCache(l *cacheLoad) {
	st, panicked := s.cachedState()
	s.mu.Lock()
	if st != nil && s.cur.Load() == nil {
		s.cur.Store(st)
		l.loaded = true
	}
	l.err = panicked
	s.cacheLoaded, s.loading = true, nil
	s.mu.Unlock()
	close(l.done)
	if l.loaded {
		s.log.Debug("colonyauth: token loaded from cache", "expires", st.exp)
	}
}

// reloadCache returns the cached token if it is valid and better than the
// current one: another source of the same key has just exchanged it.
func (s *TokenSource) reloadCache() *state {
	if s.cache == nil {
		return nil
	}
	st, _ := s.cachedState()
	if cur := s.cur.Load(); st == nil || cur != nil && !st.exp.After(cur.exp) {
		return nil
	}
	return st
}

// cachedState loads and checks the cached token; nil if there is none
// worth using. A cached token gets every check an exchanged one gets. A
// Cache that panics is reported.
func (s *TokenSource) cachedState() (*state, *Error) {
	var tok *oauth2.Token
	panicked, err := s.protect("the Cache's Load", func() (err error) { tok, err = s.cache.Load(s.cacheKey); return err })
	if panicked != nil {
		return nil, panicked
	}
	if err != nil || tok == nil {
		if err != nil {
			s.log.Debug("colonyauth: ignoring token cache", "error", s.red.message(err.Error()))
		}
		return nil, nil
	}
	now := s.clock.Now()
	if msg := checkAccessToken(tok.AccessToken); msg != "" {
		s.log.Debug("colonyauth: ignoring cached token", "reason", msg)
		return nil, nil
	}
	exp, iat, ok := jwtClaims(tok.AccessToken)
	if !ok {
		exp = tok.Expiry
	}
	if iat.IsZero() || iat.After(now) {
		iat = now // unknown age: refresh part-way through what is left
	}
	if d := exp.Sub(now); d <= 0 || d > maxLifetime {
		s.log.Debug("colonyauth: ignoring cached token: expired, or expiring more than 366 days from now")
		return nil, nil
	}
	st := newState(tok.AccessToken, iat, exp)
	if !now.Before(st.expires) || tok.AccessToken == s.revokedToken() {
		return nil, nil
	}
	return st, nil
}

func (s *TokenSource) revokedToken() string {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	return s.revoked
}

// storeCache writes a new token, unless Invalidate has revoked it meanwhile.
// A Cache that panics is reported.
func (s *TokenSource) storeCache(st *state) *Error {
	if s.cache == nil {
		return nil
	}
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if st.tok.AccessToken == s.revoked {
		return nil
	}
	tok := &oauth2.Token{AccessToken: st.tok.AccessToken, TokenType: "Bearer", Expiry: st.exp}
	panicked, err := s.protect("the Cache's Store", func() error { return s.cache.Store(s.cacheKey, tok) })
	if err != nil {
		s.log.Debug("colonyauth: cannot store token in cache", "error", s.red.message(err.Error()))
	}
	return panicked
}

// deleteCache removes the entry; s.cacheMu is held.
func (s *TokenSource) deleteCache() {
	if s.cache == nil {
		return
	}
	panicked, err := s.protect("the Cache's Delete", func() error { return s.cache.Delete(s.cacheKey) })
	if panicked != nil {
		err = panicked
	}
	if err != nil {
		s.log.Debug("colonyauth: cannot delete cached token", "error", s.red.message(err.Error()))
	}
}
