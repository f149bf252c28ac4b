package redisledger

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth"
	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// A Store is a Cache: tokens round-trip with a TTL at their expiry, the API
// key is in no Redis key or value, and a missing entry is (nil, nil).
func TestCache(t *testing.T) {
	c, prefix := sharedRedis(t)
	store := New(c, WithPrefix(prefix))
	var _ colonyauth.Cache = store
	var _ colonyauth.Ledger = store

	tok, err := store.Load("absent")
	assert.NoError(t, err)
	assert.Nil(t, tok)

	exp := time.Now().Add(90 * time.Minute).Truncate(time.Second)
	require.NoError(t, store.Store("k", &oauth2.Token{AccessToken: "tok-1", Expiry: exp}))
	got, err := store.Load("k")
	require.NoError(t, err)
	assert.Equal(t, "tok-1", got.AccessToken)
	assert.True(t, got.Expiry.Equal(exp))
	ttl := c.PTTL(context.Background(), prefix+"token:k").Val()
	assert.True(t, ttl > 89*time.Minute && ttl <= 90*time.Minute, "TTL at the token's expiry: %v", ttl)
	require.NoError(t, store.Delete("k"))
	got, err = store.Load("k")
	assert.NoError(t, err)
	assert.Nil(t, got)
	require.NoError(t, store.Delete("k"), "deleting nothing is no error")

	// Through a source: only the hashed key is stored.
	srv := colonyauthtest.NewUnstarted()
	src := colonyauth.New(srv.APIKey, colonyauth.WithBaseURL(srv.URL), colonyauth.WithHTTPClient(srv.Client()), colonyauth.WithCache(store))
	_, err = src.Token()
	require.NoError(t, err)
	all := keys(c, prefix)
	require.NotEmpty(t, all)
	for _, k := range all {
		assert.NotContains(t, k, srv.APIKey)
		assert.NotContains(t, c.Get(context.Background(), k).Val(), srv.APIKey)
		ttl := c.PTTL(context.Background(), k).Val()
		assert.True(t, ttl > 0 && ttl <= 25*time.Hour, "%s expires: %v", k, ttl)
	}
}

// Update is atomic across clients: 200 concurrent updaters on 4 clients,
// no update lost; an error of fn stores nothing.
func TestUpdateAtomic(t *testing.T) {
	c, prefix := sharedRedis(t)
	var stores []*Store
	for range 4 {
		cl := redis.NewClient(&redis.Options{Addr: c.Options().Addr, PoolSize: 60})
		t.Cleanup(func() { cl.Close() })
		stores = append(stores, New(cl, WithPrefix(prefix), WithTimeout(10*time.Second)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() {
			errs <- stores[i%4].Update("counter", func(old []byte) ([]byte, error) { return append(old, 'x'), nil })
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var got []byte
	require.NoError(t, stores[0].Update("counter", func(old []byte) ([]byte, error) { got = old; return old, nil }))
	assert.Len(t, got, 200, "no update lost")
	assert.Error(t, stores[1].Update("counter", func([]byte) ([]byte, error) { return nil, errors.New("no") }))
	require.NoError(t, stores[2].Update("counter", func(old []byte) ([]byte, error) { got = old; return old, nil }))
	assert.Len(t, got, 200, "an error of fn stores nothing")
	ttl := c.PTTL(context.Background(), prefix+"ledger:counter").Val()
	assert.True(t, ttl >= 24*time.Hour && ttl <= 25*time.Hour, "records outlive a 24 h hold, and expire when idle: %v", ttl)
}

// stepClock is a mock clock whose timers fire at once, moving the mock on:
// the sources' schedules are real, the waiting is not.
type stepClock struct{ *clock.Mock }

func (c stepClock) Timer(d time.Duration) *clock.Timer {
	t := c.Mock.Timer(d)
	c.Add(d)
	return t
}

// Two "hosts" (two Redis clients, 50 sources each) behind one address obey
// one budget and one prober: a healthy start under a 30/h limit gets every
// agent its token by 3 h 05 min with no 429; during a one-hour outage they
// send what one host alone would (≤ 40 requests), not twice as much.
func TestTwoHostsOneBudget(t *testing.T) {
	c, prefix := sharedRedis(t)
	for _, outage := range []bool{false, true} {
		deleteKeys(c, prefix)
		mock := clock.NewMock()
		mock.Set(time.Now())
		srv := colonyauthtest.NewUnstarted(colonyauthtest.WithClock(mock), colonyauthtest.WithRateLimit(30))
		var sources []*colonyauth.TokenSource
		for range 2 {
			cl := redis.NewClient(&redis.Options{Addr: c.Options().Addr})
			t.Cleanup(func() { cl.Close() })
			store := New(cl, WithPrefix(prefix))
			for range 50 {
				sources = append(sources, colonyauth.New(srv.NewKey(), colonyauth.WithBaseURL(srv.URL),
					colonyauth.WithHTTPClient(srv.Client()), colonyauth.WithCache(store), colonyauth.WithClock(stepClock{mock})))
			}
		}
		start := mock.Now()
		if outage {
			srv.Down(http.StatusBadGateway)
		}
		got := make([]time.Time, len(sources))
		for mock.Since(start) < 3*time.Hour+6*time.Minute {
			if outage && mock.Since(start) >= time.Hour {
				srv.Up()
			}
			for i, s := range sources {
				if _, err := s.Token(); err == nil && got[i].IsZero() {
					got[i] = mock.Now()
				}
			}
			mock.Add(10 * time.Second)
		}
		var during, maxHour int
		var times []time.Time
		for _, r := range srv.Requests() {
			if r.Path == "/auth/token" {
				times = append(times, r.Time)
				if r.Time.Before(start.Add(time.Hour)) {
					during++
				}
			}
		}
		for i, a := range times {
			n := 0
			for _, b := range times[i:] {
				if b.Sub(a) < time.Hour {
					n++
				}
			}
			maxHour = max(maxHour, n)
		}
		assert.Zero(t, srv.RateLimited(), "outage %v: no 429", outage)
		if outage {
			assert.LessOrEqual(t, during, 40, "one prober for both hosts")
			assert.GreaterOrEqual(t, during, 7, "someone probed")
			t.Logf("outage: %d requests in its hour from two hosts", during)
		} else {
			var last time.Duration
			for i, at := range got {
				require.False(t, at.IsZero(), "source %d has no token", i)
				last = max(last, at.Sub(start))
			}
			assert.LessOrEqual(t, last, 3*time.Hour+5*time.Minute)
			assert.LessOrEqual(t, maxHour, 30)
			t.Logf("healthy start: last token at %v, at most %d requests an hour", last, maxHour)
		}
	}
}

// Redis killed mid-run and restarted: no Token call of a source with a
// valid token fails; an exchange while Redis is down goes ahead alone
// (said once, at Warn); after the restart the sources rejoin.
func TestRedisKilledAndRestarted(t *testing.T) {
	rs := startServer(t)
	cl := redis.NewClient(&redis.Options{Addr: rs.addr, MaxRetries: -1})
	t.Cleanup(func() { cl.Close() })
	mock := clock.NewMock()
	mock.Set(time.Now()) // oauth2.Token.Valid reads the real clock
	store := New(cl, WithClock(mock))
	srv := colonyauthtest.NewUnstarted()
	var log logs
	var sources []*colonyauth.TokenSource
	for range 5 {
		s := colonyauth.New(srv.NewKey(), colonyauth.WithBaseURL(srv.URL), colonyauth.WithHTTPClient(srv.Client()),
			colonyauth.WithCache(store), colonyauth.WithLogger(log.logger()), colonyauth.WithClock(mock))
		_, err := s.Token()
		require.NoError(t, err)
		sources = append(sources, s)
	}
	rs.stop()
	for range 200 {
		for _, s := range sources {
			_, err := s.Token()
			require.NoError(t, err, "a valid token is served while Redis is down")
		}
	}
	tok, err := sources[0].Token()
	require.NoError(t, err)
	mock.Add(time.Minute) // B27: not a token rejected right after its exchange
	sources[0].Invalidate(tok)
	fresh, err := sources[0].Token()
	require.NoError(t, err, "an exchange without Redis: the source acts alone")
	assert.NotEqual(t, tok.AccessToken, fresh.AccessToken)
	assert.Equal(t, 1, log.count("acting alone"), log.String())

	rs.start()
	mock.Add(time.Minute) // past the Store's 5 s back-off, and B27's minute
	sources[0].Invalidate(fresh)
	_, err = sources[0].Token()
	require.NoError(t, err)
	assert.Equal(t, 1, log.count("works again"), "rejoined: %s", log.String())
}

// A Redis that never answers costs each call at most the Store's timeout:
// Token still returns (acting alone), and Update says why.
func TestSilentRedisIsBounded(t *testing.T) {
	addr := silentRedis(t)
	cl := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: time.Minute, WriteTimeout: time.Minute, MaxRetries: -1})
	t.Cleanup(func() { cl.Close() })
	store := New(cl, WithTimeout(100*time.Millisecond))
	err := store.Update("x", func(b []byte) ([]byte, error) { return b, nil })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no answer from Redis within 100ms")

	srv := colonyauthtest.NewUnstarted()
	var log logs
	done := make(chan error, 1)
	go func() {
		src := colonyauth.New(srv.APIKey, colonyauth.WithBaseURL(srv.URL), colonyauth.WithHTTPClient(srv.Client()),
			colonyauth.WithCache(store), colonyauth.WithLogger(log.logger()))
		_, err := src.Token()
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second): // a watchdog, not a measurement
		t.Fatal("Token waited on a silent Redis")
	}
	assert.Equal(t, 1, log.count("acting alone"))
}

// Wrong credentials or database: a clear error at first use (in the
// source's Warn line), and the source works alone.
func TestMisconfiguredRedis(t *testing.T) {
	rs := startServer(t, "--requirepass", "right-password")
	for _, c := range []struct {
		name string
		opts redis.Options
		want string
	}{
		{"wrong password", redis.Options{Addr: rs.addr, Password: "wrong-password"}, "refused the credentials"},
		{"wrong database", redis.Options{Addr: rs.addr, Password: "right-password", DB: 99}, "no such database"},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := c.opts
			cl := redis.NewClient(&opts)
			t.Cleanup(func() { cl.Close() })
			srv := colonyauthtest.NewUnstarted()
			var log logs
			src := colonyauth.New(srv.APIKey, colonyauth.WithBaseURL(srv.URL), colonyauth.WithHTTPClient(srv.Client()),
				colonyauth.WithCache(New(cl)), colonyauth.WithLogger(log.logger()))
			_, err := src.Token()
			require.NoError(t, err, "the source acts alone")
			assert.Contains(t, log.String(), c.want)
			assert.NotContains(t, log.String(), "right-password")
			assert.NotContains(t, log.String(), "wrong-password")
			assert.False(t, strings.Contains(log.String(), srv.APIKey))
		})
	}
}

// RequireRedis lets the external tests (example_test.go) skip outside CI
// without $REDIS_ADDR, and fail in CI, as these do.
func RequireRedis(t *testing.T) { sharedRedis(t) }
