package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth"
)

// sources holds one TokenSource per key: created on first use, dropped
// after IdleTime unused, at most MaxSources (the least recently used goes
// first). Keys are held by their sources only; the map is keyed by a hash.
type sources struct {
	mu    sync.Mutex
	clock clock.Clock
	m     map[string]*entry
	swept time.Time
}

type entry struct {
	src       *colonyauth.TokenSource
	exchanges *atomic.Int64
	used      time.Time
}

func newSources(c clock.Clock) *sources { return &sources{clock: c, m: map[string]*entry{}} }

// get returns the key's source, making it with make if there is none, and
// a function counting its exchanges.
func (s *sources) get(key string, make func(string, *atomic.Int64) *colonyauth.TokenSource) (*colonyauth.TokenSource, func() int64) {
	id := hashKey(key)
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[id]
	if e == nil {
		s.sweep(now)
		n := new(atomic.Int64)
		e = &entry{src: make(key, n), exchanges: n}
		s.m[id] = e
	}
	e.used = now
	return e.src, e.exchanges.Load
}

// sweep drops idle sources, once a minute or when the map is full, and the
// least recently used one while it is still full.
func (s *sources) sweep(now time.Time) {
	if len(s.m) < MaxSources && now.Sub(s.swept) < time.Minute {
		return
	}
	s.swept = now
	for id, e := range s.m {
		if now.Sub(e.used) >= IdleTime {
			delete(s.m, id)
		}
	}
	for len(s.m) >= MaxSources {
		oldest := ""
		for id, e := range s.m {
			if oldest == "" || e.used.Before(s.m[oldest].used) {
				oldest = id
			}
		}
		delete(s.m, oldest)
	}
}

// alone is the reason one of the sources acts alone, or nil.
func (s *sources) alone() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.m {
		if err := e.src.Alone(); err != nil {
			return err
		}
	}
	return nil
}

// len is the number of sources kept.
func (s *sources) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// newSource is the source of a key for requests without a code: the host's
// cache directory for tokens and the host record.
func (b *Broker) newSource(key string, exchanges *atomic.Int64) *colonyauth.TokenSource {
	return colonyauth.New(key, b.options(exchanges, colonyauth.WithCache(b.cache))...)
}

// twoFactorSource is a source for one request with a code: it shares the
// host record (the budget, the prober) but no token, in either direction.
func (b *Broker) twoFactorSource(key, code string) (*colonyauth.TokenSource, func() int64) {
	n := new(atomic.Int64)
	src := colonyauth.New(key, b.options(n,
		colonyauth.WithCache(ledgerOnly{b.cache.(colonyauth.Ledger)}),
		colonyauth.WithTOTP(func() (string, error) { return code, nil }),
	)...)
	return src, n.Load
}

func (b *Broker) options(exchanges *atomic.Int64, more ...colonyauth.Option) []colonyauth.Option {
	return append([]colonyauth.Option{
		colonyauth.WithBaseURL(b.base),
		colonyauth.WithHTTPClient(b.client),
		colonyauth.WithClock(b.clock),
		colonyauth.WithLogger(slog.New(&counter{n: exchanges, next: b.log.Handler()})),
	}, more...)
}

// ledgerOnly shares a cache's Ledger but keeps no token: a token minted
// with a two-factor code is neither loaded from nor stored in the cache.
type ledgerOnly struct{ l colonyauth.Ledger }

func (ledgerOnly) Load(string) (*oauth2.Token, error) { return nil, nil }
func (ledgerOnly) Store(string, *oauth2.Token) error  { return nil }
func (ledgerOnly) Delete(string) error                { return nil }
func (c ledgerOnly) Update(name string, fn func([]byte) ([]byte, error)) error {
	return c.l.Update(name, fn)
}

// counter counts a source's exchanges from its log ("token obtained", at
// Debug) and passes its warnings on.
type counter struct {
	n    *atomic.Int64
	next slog.Handler
}

func (c *counter) Enabled(ctx context.Context, l slog.Level) bool {
	return l == slog.LevelDebug || c.next.Enabled(ctx, l)
}

func (c *counter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "colonyauth: token obtained" {
		c.n.Add(1)
	}
	if r.Level > slog.LevelDebug && c.next.Enabled(ctx, r.Level) {
		return c.next.Handle(ctx, r)
	}
	return nil
}

func (c *counter) WithAttrs(as []slog.Attr) slog.Handler {
	return &counter{n: c.n, next: c.next.WithAttrs(as)}
}
func (c *counter) WithGroup(g string) slog.Handler {
	return &counter{n: c.n, next: c.next.WithGroup(g)}
}

// hashKey names a key in the map without holding it there.
func hashKey(key string) string {
	sum := sha256.Sum256([]byte("colonytoken-broker\x00" + key))
	return hex.EncodeToString(sum[:])
}

// fingerprint is the key's short fingerprint for logs: 8 hex digits of a
// hash, enough to tell keys apart, useless to recover one.
func fingerprint(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:4])
}
