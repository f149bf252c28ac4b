package redisledger

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth"
	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// Redis fails safe (B33), against real redis-servers.

// delayProxy forwards TCP to a Redis, delaying its answers while slow is
// set: a Redis, or a network, that answers late. It records what the
// clients send.
type delayProxy struct {
	addr  string
	slow  atomic.Int64 // delay of each answer, ns
	mu    sync.Mutex
	sent  strings.Builder
	conns []net.Conn
}

func newDelayProxy(t *testing.T, target string) *delayProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &delayProxy{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, r)
			p.mu.Unlock()
			go func() { // client → Redis, recorded
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						p.mu.Lock()
						p.sent.Write(buf[:n])
						p.mu.Unlock()
						r.Write(buf[:n])
					}
					if err != nil {
						r.Close()
						return
					}
				}
			}()
			go func() { // Redis → client, late while slow
				buf := make([]byte, 4096)
				for {
					n, err := r.Read(buf)
					if n > 0 {
						time.Sleep(time.Duration(p.slow.Load())) // the fault injected, not a test's wait
						c.Write(buf[:n])
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *delayProxy) sentText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent.String()
}

// B33: an Update that times out because Redis answers late never commits
// later: the abandoned call sees it was abandoned and aborts before fn and
// before MULTI/EXEC (so it cannot race the caller's variables either; -race
// would report it).
func TestLateAnswerNeverCommits(t *testing.T) {
	rs := startServer(t)
	proxy := newDelayProxy(t, rs.addr)
	cl := redis.NewClient(&redis.Options{Addr: proxy.addr, MaxRetries: -1, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	t.Cleanup(func() { cl.Close() })
	store := New(cl, WithTimeout(100*time.Millisecond))
	ended := make(chan struct{}, 16)
	hook := func() { ended <- struct{}{} }
	callDone.Store(&hook)
	defer callDone.Store(nil)
	require.NoError(t, store.Update("r", func([]byte) ([]byte, error) { return []byte("before"), nil }), "a fast Redis first")
	<-ended

	proxy.slow.Store(int64(300 * time.Millisecond))
	verdict := "unset"
	err := store.Update("r", func([]byte) ([]byte, error) {
		verdict = "decided by the abandoned call" // a data race, and a phantom decision, if it ran
		return []byte("phantom"), nil
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no answer from Redis within 100ms")
	select {
	case <-ended: // the abandoned goroutine has finished, whatever it did
	case <-time.After(30 * time.Second): // a watchdog, not a measurement
		t.Fatal("the abandoned call never ended")
	}
	assert.Equal(t, "unset", verdict, "fn never ran for an abandoned call")
	assert.NotContains(t, proxy.sentText(), "EXEC", "nothing committed")
	direct := redis.NewClient(&redis.Options{Addr: rs.addr})
	defer direct.Close()
	got, err := direct.Get(context.Background(), DefaultPrefix+"ledger:r").Result()
	require.NoError(t, err)
	assert.Equal(t, "before", got)
}

// B33: a Redis that does not answer (CLIENT PAUSE) costs one timeout: the
// Store is then not asked for 5 s, and says why; a source's Token acts
// alone and returns.
func TestPausedRedisCostsOneTimeout(t *testing.T) {
	rs := startServer(t)
	cl := redis.NewClient(&redis.Options{Addr: rs.addr, MaxRetries: -1})
	t.Cleanup(func() { cl.Close() })
	admin := redis.NewClient(&redis.Options{Addr: rs.addr})
	t.Cleanup(func() { admin.Close() })
	require.NoError(t, cl.Ping(context.Background()).Err())
	require.NoError(t, admin.Do(context.Background(), "CLIENT", "PAUSE", "3000", "ALL").Err())

	var calls atomic.Int32
	hook := func() { calls.Add(1) }
	callDone.Store(&hook)
	defer callDone.Store(nil)
	store := New(cl, WithTimeout(100*time.Millisecond))
	srv := colonyauthtest.NewUnstarted()
	var log logs
	for range 3 {
		src := colonyauth.New(srv.NewKey(), colonyauth.WithBaseURL(srv.URL), colonyauth.WithHTTPClient(srv.Client()),
			colonyauth.WithCache(store), colonyauth.WithLogger(log.logger()))
		_, err := src.Token()
		require.NoError(t, err, "acting alone")
		require.Error(t, src.Alone())
		assert.Contains(t, src.Alone().Error(), "no answer from Redis within 100ms", "the reason, even from the back-off")
	}
	err := store.Update("x", func(b []byte) ([]byte, error) { return b, nil })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not asked again for 5s")
	assert.LessOrEqual(t, int(calls.Load()), 1, "one call reached Redis; the others failed at once")
}

// B33: a record lives at least as long as the longest hold it carries: a
// 429 with Retry-After: 43200 (12 h) holds restarted agents for all of it.
func TestRecordOutlivesItsHold(t *testing.T) {
	c, prefix := sharedRedis(t)
	store := New(c, WithPrefix(prefix))
	srv := colonyauthtest.NewUnstarted()
	srv.FailNext(1, 429, 12*time.Hour)
	_, err := colonyauth.New(srv.NewKey(), colonyauth.WithBaseURL(srv.URL), colonyauth.WithHTTPClient(srv.Client()), colonyauth.WithCache(store)).Token()
	require.ErrorIs(t, err, colonyauth.ErrRateLimited)
	for _, k := range keys(c, prefix) {
		if strings.Contains(k, "ledger:") {
			ttl := c.PTTL(context.Background(), k).Val()
			assert.GreaterOrEqual(t, ttl, 12*time.Hour, "the record outlives the hold")
		}
	}
	_, err = colonyauth.New(srv.NewKey(), colonyauth.WithBaseURL(srv.URL), colonyauth.WithHTTPClient(srv.Client()), colonyauth.WithCache(store)).Token()
	require.ErrorIs(t, err, colonyauth.ErrRateLimited, "a restarted agent is held too")
	assert.Equal(t, 1, srv.Exchanges())
}

// B33: when Redis is full, a noeviction server refuses writes (an error:
// the source acts alone and says why), and an allkeys-lru server evicts
// (the record is gone: the sources start afresh); neither fails a Token.
func TestFullRedis(t *testing.T) {
	for _, policy := range []string{"noeviction", "allkeys-lru"} {
		t.Run(policy, func(t *testing.T) {
			rs := startServer(t, "--maxmemory", "2mb", "--maxmemory-policy", policy)
			cl := redis.NewClient(&redis.Options{Addr: rs.addr, MaxRetries: -1})
			t.Cleanup(func() { cl.Close() })
			ctx := context.Background()
			junk := strings.Repeat("x", 10_000)
			for i := 0; i < 2000; i++ {
				if cl.Set(ctx, fmt.Sprintf("junk:%d", i), junk, 0).Err() != nil {
					break // full
				}
			}
			store := New(cl)
			srv := colonyauthtest.NewUnstarted()
			var log logs
			src := colonyauth.New(srv.APIKey, colonyauth.WithBaseURL(srv.URL), colonyauth.WithHTTPClient(srv.Client()),
				colonyauth.WithCache(store), colonyauth.WithLogger(log.logger()))
			_, err := src.Token()
			require.NoError(t, err)
			if policy == "noeviction" {
				require.Error(t, src.Alone())
				assert.Contains(t, src.Alone().Error(), "refused the write (out of memory")
				assert.Equal(t, 1, log.count("acting alone"))
			} else {
				assert.NoError(t, src.Alone(), "writes succeed by evicting")
			}
		})
	}
}

// B31, B33: a key of another type at the record's name is replaced; a
// record that is garbage or poisoned costs no crash (the decision runs
// under recover inside fn); an fn that panics is an error.
func TestHostileRecordsInRedis(t *testing.T) {
	c, prefix := sharedRedis(t)
	store := New(c, WithPrefix(prefix))
	ctx := context.Background()
	require.NoError(t, c.HSet(ctx, prefix+"ledger:wrong", "a", "b").Err())
	require.NoError(t, store.Update("wrong", func(old []byte) ([]byte, error) {
		assert.Nil(t, old, "a hash is no record")
		return []byte("{}"), nil
	}))
	assert.Equal(t, "{}", c.Get(ctx, prefix+"ledger:wrong").Val())

	err := store.Update("p", func([]byte) ([]byte, error) { panic("a buggy fn") })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "panicked")
	require.NoError(t, store.Update("p", func(b []byte) ([]byte, error) { return b, nil }), "a panic is not a Redis failure")

	srv := colonyauthtest.NewUnstarted()
	for _, record := range []string{`{"keys":{"x":null}}`, `garbage`, `{"strikes":-5,"slots":"x"}`} {
		name := colonyauthLedgerName(t, store, srv)
		require.NoError(t, c.Set(ctx, prefix+"ledger:"+name, record, time.Hour).Err())
		_, err := colonyauth.New(srv.NewKey(), colonyauth.WithBaseURL(srv.URL), colonyauth.WithHTTPClient(srv.Client()), colonyauth.WithCache(store)).Token()
		require.NoError(t, err, "record %s", record)
	}
}

// colonyauthLedgerName finds the name colonyauth gives the record of srv's
// base URL, by watching a source's first Update.
func colonyauthLedgerName(t *testing.T, store *Store, srv *colonyauthtest.Server) string {
	rec := &recordingLedger{store: store}
	_, err := colonyauth.New(srv.NewKey(), colonyauth.WithBaseURL(srv.URL), colonyauth.WithHTTPClient(srv.Client()), colonyauth.WithCache(rec)).Token()
	require.NoError(t, err)
	require.NotEmpty(t, rec.name)
	return rec.name
}

type recordingLedger struct {
	store *Store
	name  string
}

func (r *recordingLedger) Load(key string) (*oauth2.Token, error) { return r.store.Load(key) }
func (r *recordingLedger) Store(key string, tok *oauth2.Token) error {
	return r.store.Store(key, tok)
}
func (r *recordingLedger) Delete(key string) error { return r.store.Delete(key) }
func (r *recordingLedger) Update(name string, fn func([]byte) ([]byte, error)) error {
	r.name = name
	return r.store.Update(name, fn)
}
