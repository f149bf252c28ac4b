// Package redisledger keeps colonyauth's tokens and fleet ledger in Redis,
// so that agents on many machines behind one IP address (pods of a cluster
// leaving through one NAT gateway) share /auth/token's 30 requests an hour
// as the agents of one host do through a cache directory:
//
//	store := redisledger.New(redis.NewClient(&redis.Options{Addr: "redis:6379"}))
//	src := colonyauth.New(apiKey, colonyauth.WithCache(store))
//
// A Store is a colonyauth.Cache and a colonyauth.Ledger. Tokens live under
// the prefix (default "colonyauth:") as "token:<hashed key>" with a TTL at
// their expiry; the API key is never stored, only the hash colonyauth gives
// a Cache. Ledger records live as "ledger:<name>", replaced atomically
// (WATCH/MULTI/EXEC, retried a bounded number of times on contention) with a
// TTL of a few hours, so nothing grows without bound; no command scans the
// keyspace.
//
// Every Redis call is bounded by a short timeout (250 ms by default). When
// Redis is down, slow, partitioned or refuses the credentials, the call
// fails within it, and colonyauth works on: a source acts alone (and says
// so once, at Warn; TokenSource.Alone says why) until Redis answers again.
// After a failure the Store is not asked again for 5 s, so a Redis that is
// down costs a Token call at most one timeout. A call that timed out never
// commits later: its update sees that it was abandoned and aborts. A record
// lives 25 hours, longer than the longest hold it can carry (24 h).
//
// Redis keeps the records in memory: a Redis restart without persistence,
// or an eviction (maxmemory-policy allkeys-lru), forgets them, and the
// sources then start afresh (the Colony's own limit still holds them to 30
// an hour, at the price of a 429 or two); with noeviction a full Redis
// refuses the writes, and the sources act alone and say so.
//
// Client options that suit the Store: short dial, read and write timeouts
// (the Store bounds each call anyway), no retries of its own, and reads
// bounded by the context:
//
//	redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 250 * time.Millisecond,
//		ReadTimeout: 250 * time.Millisecond, WriteTimeout: 250 * time.Millisecond,
//		MaxRetries: -1, ContextTimeoutEnabled: true})
//
// go-redis logs its own connection failures ("failed to dial after 5
// attempts") through a package logger; redis.SetLogger(&logging.VoidLogger{})
// (package github.com/redis/go-redis/v9/logging) silences it, and the
// source's Warn line already says that Redis failed.
package redisledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
)

// Defaults of a Store.
const (
	DefaultPrefix  = "colonyauth:"
	DefaultTimeout = 250 * time.Millisecond
	// recordTTL outlives everything a ledger record holds (a rolling hour of
	// answers, a 429 hold of at most 24 hours, the longest Retry-After
	// obeyed); an idle record then expires (B33).
	recordTTL = 25 * time.Hour
	// backOff is how long a Store that failed is not asked again: a Redis
	// that is down costs a Token call at most one timeout (B33).
	backOff = 5 * time.Second
	// maxTries bounds the optimistic transaction of Update under contention.
	maxTries = 50
)

// Store is a colonyauth.Cache and colonyauth.Ledger on Redis. It is safe for
// concurrent use; share one per process.
type Store struct {
	client   redis.UniversalClient
	prefix   string
	timeout  time.Duration
	mu       sync.Mutex // one Update at a time from this process: contention only across processes
	clock    clock.Clock
	failedAt atomic.Int64          // the last failed call, Unix ns; 0 = none ...
	lastErr  atomic.Pointer[error] // ... and its error
}

// Option configures a Store.
type Option func(*Store)

// WithPrefix sets the prefix of every key the Store writes (default
// "colonyauth:"), to share one Redis between applications or fleets.
func WithPrefix(p string) Option { return func(s *Store) { s.prefix = p } }

// WithTimeout bounds every Redis call (default 250 ms): the longest a
// Token call waits for Redis before the source acts alone.
func WithTimeout(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.timeout = d
		}
	}
}

// WithClock sets the clock of the Store's back-off after a failure (5 s
// during which Redis is not asked); tests pass a *clock.Mock. The Redis
// calls themselves are bounded in real time.
func WithClock(c clock.Clock) Option {
	return func(s *Store) {
		if c != nil {
			s.clock = c
		}
	}
}

// New returns a Store on client (a *redis.Client, *redis.ClusterClient or
// *redis.Ring). It sends nothing: the first use finds out whether Redis
// answers, and a failure then is an error of that call (logged by the
// source) rather than of New.
func New(client redis.UniversalClient, opts ...Option) *Store {
	s := &Store{client: client, prefix: DefaultPrefix, timeout: DefaultTimeout, clock: clock.New()}
	for _, o := range opts {
		if o != nil {
			o(s)
		}
	}
	return s
}

// String describes the Store without secrets.
func (s *Store) String() string { return fmt.Sprintf("redisledger.Store(prefix %q)", s.prefix) }

type entry struct {
	AccessToken string    `json:"access_token"`
	Expiry      time.Time `json:"expiry"`
}

// Load returns the token stored under key, or (nil, nil) if there is none.
func (s *Store) Load(key string) (*oauth2.Token, error) {
	var data []byte
	err := s.call(func(ctx context.Context) (err error) {
		data, err = s.client.Get(ctx, s.prefix+"token:"+key).Bytes()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e entry
	if err := json.Unmarshal(data, &e); err != nil || e.AccessToken == "" {
		return nil, errors.New("redisledger: corrupt token entry")
	}
	return &oauth2.Token{AccessToken: e.AccessToken, TokenType: "Bearer", Expiry: e.Expiry}, nil
}

// Store writes tok under key, to expire with the token.
func (s *Store) Store(key string, tok *oauth2.Token) error {
	ttl := time.Until(tok.Expiry)
	if tok.Expiry.IsZero() || ttl <= 0 {
		ttl = time.Hour // colonyauth gives real expiries; this only guards a caller that does not
	}
	data, err := json.Marshal(entry{AccessToken: tok.AccessToken, Expiry: tok.Expiry})
	if err != nil {
		return err
	}
	return s.call(func(ctx context.Context) error {
		return s.client.Set(ctx, s.prefix+"token:"+key, data, ttl).Err()
	})
}

// Delete removes the token under key; a missing one is not an error.
func (s *Store) Delete(key string) error {
	return s.call(func(ctx context.Context) error {
		return s.client.Del(ctx, s.prefix+"token:"+key).Err()
	})
}

// fnError carries an error of fn out of the transaction: nothing is written.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// Update atomically replaces the record name with fn(old): WATCH, GET, fn,
// MULTI/SET/EXEC, tried again (at most 50 times, with a short random pause)
// when another client changed the record in between. fn may run more than
// once; the last run's result is stored.
func (s *Store) Update(name string, fn func(old []byte) ([]byte, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := s.prefix + "ledger:" + name
	var g guard
	return s.callGuarded(&g, func(ctx context.Context) error {
		for range maxTries {
			err := s.client.Watch(ctx, func(tx *redis.Tx) error {
				old, err := tx.Get(ctx, key).Bytes()
				switch {
				case err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE"):
					old = nil // a key of another type at the record's name: replaced (B31)
				case err != nil && !errors.Is(err, redis.Nil):
					return err
				}
				data, err := g.run(fn, old)
				if err != nil {
					return err
				}
				if g.isAbandoned() { // the caller gave up: never commit later
					return errAbandoned
				}
				_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Set(ctx, key, data, recordTTL)
					return nil
				})
				return err
			}, key)
			if !errors.Is(err, redis.TxFailedErr) {
				return err // nil, a Redis error, or fn's (a fnError)
			}
			select { // another client won: try again after a short pause
			case <-time.After(time.Duration(rand.IntN(2000)) * time.Microsecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return fmt.Errorf("redisledger: record %q changed by other clients %d times in a row", name, maxTries)
	})
}

// guard is what an Update's goroutine and its caller share: once the
// caller has given up (its timeout), fn is not called and nothing is
// committed, so an abandoned call never changes the record later, nor the
// caller's variables (B33).
type guard struct {
	mu        sync.Mutex // held while fn runs
	abandoned bool
}

// callDone, if set (by tests), is called when a call's goroutine ends,
// abandoned or not.
var callDone atomic.Pointer[func()]

var errAbandoned = errors.New("redisledger: the call was abandoned (timed out) before it could commit")

// run calls fn unless the call was abandoned. A panic of fn is an error.
func (g *guard) run(fn func([]byte) ([]byte, error), old []byte) (data []byte, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.abandoned {
		return nil, errAbandoned
	}
	defer func() {
		if v := recover(); v != nil {
			err = fnError{fmt.Errorf("redisledger: the update function panicked: %v", v)}
		}
	}()
	data, err = fn(old)
	if err != nil {
		err = fnError{err}
	}
	return data, err
}

func (g *guard) abandon() {
	g.mu.Lock() // waits for an fn that is running: it is quick, and must not race the caller
	g.abandoned = true
	g.mu.Unlock()
}

func (g *guard) isAbandoned() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.abandoned
}

// call runs f with a context bounded by the Store's timeout, and returns
// when the timeout ends even if the client does not (its own timeouts may
// be longer). After a failure the Store is not asked again for 5 s: the
// call fails at once. A panic in f is an error, never a crash. Errors say
// what Redis said, with a hint for the usual configuration mistakes.
func (s *Store) call(f func(ctx context.Context) error) error {
	return s.callGuarded(nil, f)
}

func (s *Store) callGuarded(g *guard, f func(ctx context.Context) error) error {
	if at := s.failedAt.Load(); at != 0 {
		if since := s.clock.Since(time.Unix(0, at)); since < backOff {
			if last := s.lastErr.Load(); last != nil {
				return fmt.Errorf("%w (Redis not asked again for %v)", *last, backOff)
			}
			return fmt.Errorf("redisledger: Redis failed; not asked again for %v", backOff)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				done <- fmt.Errorf("redisledger: the Redis client panicked: %v", v)
			}
			if f := callDone.Load(); f != nil {
				(*f)()
			}
		}()
		done <- f(ctx)
	}()
	var err error
	select {
	case err = <-done:
		var fe fnError
		switch {
		case errors.As(err, &fe):
			return fe.err // fn's own error: Redis answered
		case errors.Is(err, redis.Nil):
			return err
		}
		err = explain(err)
	case <-ctx.Done():
		if g != nil {
			g.abandon()
		}
		err = fmt.Errorf("redisledger: no answer from Redis within %v: %w", s.timeout, ctx.Err())
	}
	if err != nil {
		s.lastErr.Store(&err)
		s.failedAt.Store(s.clock.Now().UnixNano())
	} else {
		s.failedAt.Store(0)
	}
	return err
}

func explain(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "invalid password"):
		return fmt.Errorf("redisledger: Redis refused the credentials (check the client's Username and Password): %w", err)
	case strings.Contains(msg, "OOM"), strings.Contains(msg, "EXECABORT"):
		return fmt.Errorf("redisledger: Redis refused the write (out of memory, with maxmemory-policy noeviction? give it room, or use volatile-lru or allkeys-lru): %w", err)
	case strings.Contains(msg, "DB index is out of range"):
		return fmt.Errorf("redisledger: Redis has no such database (check the client's DB index): %w", err)
	}
	return fmt.Errorf("redisledger: %w", err)
}
