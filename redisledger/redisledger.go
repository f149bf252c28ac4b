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
// so once, at Warn) until Redis answers again. Redis keeps the records in
// memory: a Redis restart without persistence forgets them, and the sources
// then start afresh (the Colony's own limit still holds them to 30 an hour,
// at the price of a 429 or two).
package redisledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"
)

// Defaults of a Store.
const (
	DefaultPrefix  = "colonyauth:"
	DefaultTimeout = 250 * time.Millisecond
	// recordTTL outlives everything a ledger record holds (a rolling hour of
	// answers, a 429 hold of at most an hour); an idle record then expires.
	recordTTL = 3 * time.Hour
	// maxTries bounds the optimistic transaction of Update under contention.
	maxTries = 50
)

// Store is a colonyauth.Cache and colonyauth.Ledger on Redis. It is safe for
// concurrent use; share one per process.
type Store struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
	mu      sync.Mutex // one Update at a time from this process: contention only across processes
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

// New returns a Store on client (a *redis.Client, *redis.ClusterClient or
// *redis.Ring). It sends nothing: the first use finds out whether Redis
// answers, and a failure then is an error of that call (logged by the
// source) rather than of New.
func New(client redis.UniversalClient, opts ...Option) *Store {
	s := &Store{client: client, prefix: DefaultPrefix, timeout: DefaultTimeout}
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
	return s.call(func(ctx context.Context) error {
		for range maxTries {
			err := s.client.Watch(ctx, func(tx *redis.Tx) error {
				old, err := tx.Get(ctx, key).Bytes()
				if err != nil && !errors.Is(err, redis.Nil) {
					return err
				}
				data, err := fn(old)
				if err != nil {
					return fnError{err}
				}
				_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Set(ctx, key, data, recordTTL)
					return nil
				})
				return err
			}, key)
			var fe fnError
			switch {
			case errors.As(err, &fe):
				return fe.err
			case !errors.Is(err, redis.TxFailedErr):
				return err
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

// call runs f with a context bounded by the Store's timeout, and returns
// when the timeout ends even if the client does not (its own timeouts may
// be longer). Errors say what Redis said, with a hint for the usual
// configuration mistakes.
func (s *Store) call(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	select {
	case err := <-done:
		return explain(err)
	case <-ctx.Done():
		return fmt.Errorf("redisledger: no answer from Redis within %v: %w", s.timeout, ctx.Err())
	}
}

func explain(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "invalid password"):
		return fmt.Errorf("redisledger: Redis refused the credentials (check the client's Username and Password): %w", err)
	case strings.Contains(msg, "DB index is out of range"):
		return fmt.Errorf("redisledger: Redis has no such database (check the client's DB index): %w", err)
	}
	return fmt.Errorf("redisledger: %w", err)
}
