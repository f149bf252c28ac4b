package colonyauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// Shared state is untrusted and never a trap (B31–B34).

// poison writes a host record by hand, as a crashed process, an older
// version or a hostile co-tenant could, into a directory or a memory cache.
func poison(t *testing.T, c Cache, baseURL, record string) {
	t.Helper()
	require.NoError(t, c.(Ledger).Update(ledgerName(baseURL), func([]byte) ([]byte, error) { return []byte(record), nil }))
}

// caches are the two Ledgers of the package, for table tests.
var caches = map[string]func(t *testing.T) Cache{
	"directory": func(t *testing.T) Cache { return fileCache{dir: t.TempDir()} },
	"memory":    func(*testing.T) Cache { return NewMemoryCache() },
}

// B31: records written by hand never stop the host: each costs at most a
// bounded wait, never a panic, a hang or a permanent failure.
func TestPoisonedRecords(t *testing.T) {
	far := time.Now().AddDate(100, 0, 0).UnixMilli() // "100 years ahead" (of the bubble's clock too)
	slots := make([]int64, 30)
	for i := range slots {
		slots[i] = far + int64(i)
	}
	farSlots, _ := json.Marshal(slots)
	for _, c := range []struct {
		name   string
		record string
		most   time.Duration // the longest a fresh agent is held back
	}{
		{"a null key entry", `{"keys":{"x":null}}`, 0},
		{"wrong types everywhere", `{"slots":"many","hold":"soon","strikes":"x","keys":{"a":7,"b":[1]},"fail":3}`, 0},
		{"negative counts", `{"strikes":-5,"tries":-3,"slots":[-1,-2]}`, 0},
		{"not an object", `[1,2,3]`, 0},
		{"a 429 hold 100 years ahead", fmt.Sprintf(`{"hold":%d}`, far), 24 * time.Hour},
		{"30 slots 100 years ahead", fmt.Sprintf(`{"slots":%s}`, farSlots), time.Hour + time.Minute},
		{"an outage's last attempt and Retry-After 100 years ahead", fmt.Sprintf(`{"down":1,"tries":40,"last":%d,"nb":%d}`, far, far), 10 * time.Minute},
		{"a prober's lease 100 years ahead", fmt.Sprintf(`{"prober":"ghost","lease":%d}`, far), 35 * time.Second},
		{"a key exchanged 100 years ahead", "", time.Minute},
		{"a busy key 100 years ahead", "", 35 * time.Second},
	} {
		for cname, cache := range caches {
			t.Run(c.name+"/"+cname, func(t *testing.T) {
				bubble(t, func(t *testing.T) {
					srv := colonyauthtest.NewUnstarted()
					shared := cache(t)
					record := c.record
					switch c.name {
					case "a key exchanged 100 years ahead":
						record = fmt.Sprintf(`{"keys":{%q:{"obtained":%d}}}`, cacheKey(srv.URL, srv.APIKey), far)
					case "a busy key 100 years ahead":
						record = fmt.Sprintf(`{"keys":{%q:{"busy":"ghost","busy_till":%d}}}`, cacheKey(srv.URL, srv.APIKey), far)
					}
					poison(t, shared, srv.URL, record)
					ctx, cancel := context.WithCancel(background)
					defer cancel()
					s := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithCache(shared), WithContext(ctx))
					start := time.Now()
					done := make(chan error, 1)
					go func() {
						for {
							_, err := s.Token()
							var e *Error
							if err == nil || !asErrorOK(err, &e) || e.RetryAfter == 0 {
								done <- err
								return
							}
							if e.RetryAfter > c.most+time.Second {
								done <- fmt.Errorf("held back %v: %w", e.RetryAfter, err)
								return
							}
							time.Sleep(e.RetryAfter)
						}
					}()
					select {
					case err := <-done:
						require.NoError(t, err)
					case <-time.After(c.most + time.Hour):
						cancel() // so that the bubble's goroutines end
						<-done
						t.Fatal("Token never returned")
					}
					assert.LessOrEqual(t, time.Since(start), c.most+time.Second, "held back at most what a source could have written")
					assert.Equal(t, 1, srv.Exchanges())
				})
			})
		}
	}
}

func asErrorOK(err error, e **Error) bool {
	var x *Error
	ok := err != nil && errors.As(err, &x)
	*e = x
	return ok
}

// B31: a record with {"strikes":-5} followed by a 429 still holds every
// sharing source (60 s, doubling): 5 sources calling every 10 s for 10
// minutes into a 429 send a few requests, not 30.
func TestNegativeStrikesStillHold(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		shared := NewMemoryCache()
		poison(t, shared, srv.URL, `{"strikes":-5}`)
		srv.Down(http.StatusTooManyRequests)
		agents := newHost(srv, 5, shared)
		runAgents(agents, time.Now().Add(10*time.Minute))
		assert.LessOrEqual(t, srv.Exchanges(), 4, "held at 60, 120, 240 s")
	})
}

// B31: a record written "in the future" (the clock stepped back an hour
// since) is read as if written now: its 60 s 429 hold holds a fresh agent
// 60 s, not 1 h 1 min.
func TestClockSteppedBack(t *testing.T) {
	for name, cache := range caches {
		t.Run(name, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				srv := colonyauthtest.NewUnstarted()
				shared := cache(t)
				future := time.Now().Add(time.Hour)
				poison(t, shared, srv.URL, fmt.Sprintf(`{"at":%d,"hold":%d,"strikes":1,"ok":%d}`, ms(future), ms(future.Add(time.Minute)), ms(future)))
				_, err := newHost(srv, 1, shared)[0].src.Token()
				require.ErrorIs(t, err, ErrRateLimited)
				assert.Equal(t, time.Minute, asError(t, err).RetryAfter)
				assert.Zero(t, srv.Exchanges())
			})
		})
	}
}

// B31: the decision code runs under recover inside the function given to
// Update: a record that makes it panic is replaced by an empty one, for
// every Ledger (here one that runs fn on another goroutine, as a store
// with its own connection goroutines may).
func TestDecisionPanicReplacesRecord(t *testing.T) {
	l := &goroutineLedger{Cache: NewMemoryCache()}
	name := "host-x"
	require.NoError(t, l.Update(name, func([]byte) ([]byte, error) { return []byte(`{"tries":3,"down":1}`), nil }))
	calls := 0
	note, err := updateRecord(l, name, time.Now(), redactor{}, func(h *hostRecord) {
		calls++
		if h.Tries == 3 {
			panic("a bug that this record triggers")
		}
		h.Tries = 1
	})
	require.NoError(t, err)
	assert.Equal(t, 2, calls, "run again on an empty record")
	assert.Contains(t, note, "replaced")
	var got hostRecord
	require.NoError(t, l.Update(name, func(old []byte) ([]byte, error) { return old, json.Unmarshal(old, &got) }))
	assert.Equal(t, 1, got.Tries, "the record was replaced")
}

// goroutineLedger runs fn on a goroutine of its own: a panic there would
// kill the process.
type goroutineLedger struct{ Cache }

func (g *goroutineLedger) Update(name string, fn func([]byte) ([]byte, error)) error {
	done := make(chan error, 1)
	go func() { done <- g.Cache.(Ledger).Update(name, fn) }()
	return <-done
}

// B32: a slow Cache.Load runs outside the source's mutex and once for all
// callers: callers with 200 ms deadlines return at 200 ms.
func TestSlowCacheLoadKeepsDeadlines(t *testing.T) {
	bubble(t, func(t *testing.T) {
		slow := &slowCache{Cache: NewMemoryCache(), delay: 3 * time.Second}
		_, s := newFake(t, WithCache(slow))
		start := time.Now()
		for range 5 {
			ctx, cancel := context.WithTimeout(background, 200*time.Millisecond)
			_, err := s.TokenContext(ctx)
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded)
		}
		assert.Equal(t, time.Second, time.Since(start), "5 callers, 200 ms each")
		assert.EqualValues(t, 1, slow.loads.Load(), "one Load for all")
		mustToken(t, s)
	})
}

type slowCache struct {
	Cache
	delay time.Duration
	loads atomic.Int32
}

func (c *slowCache) Load(key string) (*oauth2.Token, error) {
	c.loads.Add(1)
	time.Sleep(c.delay)
	return c.Cache.Load(key)
}

// B32: nothing is logged while the directory's lock is held: a logger that
// tries the lock itself finds it free every time.
func TestNoLoggingUnderTheLock(t *testing.T) {
	bubble(t, func(t *testing.T) {
		dir := t.TempDir()
		srv := colonyauthtest.NewUnstarted()
		require.NoError(t, os.WriteFile(filepath.Join(dir, ledgerName(srv.URL)+".ledger"), []byte(`{"keys":{"x":null}}`), 0o600))
		var held, logged atomic.Int32
		log := slogFunc(func(msg string) {
			logged.Add(1)
			unlock, err := lockFile(filepath.Join(dir, ".lock"), 0)
			if err != nil {
				held.Add(1)
				return
			}
			unlock()
		})
		s := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithFileCache(dir), WithLogger(log))
		mustToken(t, s)
		assert.Positive(t, logged.Load())
		assert.Zero(t, held.Load(), "a line was logged while the lock was held")
	})
}

// B32: a FIFO where the lock file should be is refused at once (never
// opened blocking): the source acts alone.
func TestLockFileFIFO(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, mkfifo(filepath.Join(dir, ".lock")))
	srv := colonyauthtest.NewServer()
	defer srv.Close()
	done := make(chan error, 1)
	var logs logBuffer
	s := New(srv.APIKey, WithBaseURL(srv.URL), WithFileCache(dir), WithLogger(logs.logger()))
	go func() { _, err := s.Token(); done <- err }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Token blocked on a FIFO lock file")
	}
	assert.Contains(t, s.Alone().Error(), "not a regular file")
	assert.Equal(t, 1, countLines(logs.String(), "acting alone"))
}

// B34: no %v, %+v or %#v of an exported type shows a key or a token.
func TestFormattingShowsNoSecret(t *testing.T) {
	bubble(t, func(t *testing.T) {
		mem := NewMemoryCache()
		srv, s := newFake(t, WithCache(mem))
		tok := mustToken(t, s)
		for _, v := range []any{mem, s, *s, &s, NewMemoryCache()} {
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
				out := fmt.Sprintf(verb, v)
				assert.NotContains(t, out, srv.APIKey[:8], "%s of %T", verb, v)
				assert.NotContains(t, out, tok.AccessToken[:20], "%s of %T", verb, v)
				assert.NotContains(t, out, fmt.Sprintf("%x", srv.APIKey[:8]), "%s of %T", verb, v)
			}
		}
		assert.Contains(t, fmt.Sprint(mem), "1 tokens")
		var zero TokenSource
		assert.NotPanics(t, func() { _ = fmt.Sprintf("%v %+v %#v", zero, &zero, zero) })
		assert.True(t, strings.HasPrefix(s.String(), "colonyauth.TokenSource("))
	})
}

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o600) }

// slogFunc is a logger that calls f with each record's message.
func slogFunc(f func(msg string)) *slog.Logger { return slog.New(funcHandler(f)) }

type funcHandler func(msg string)

func (funcHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h funcHandler) Handle(_ context.Context, r slog.Record) error {
	h(r.Message)
	return nil
}
func (h funcHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h funcHandler) WithGroup(string) slog.Handler      { return h }

// B31 for a source alone: after a 60 s 429 hold, a clock stepped back an
// hour stretches neither the remembered failure nor the source's own
// record by that hour: it exchanges again within two holds.
func TestClockSteppedBackAlone(t *testing.T) {
	mock := clock.NewMock()
	mock.Set(time.Now())
	srv := colonyauthtest.NewServer(colonyauthtest.WithClock(mock))
	defer srv.Close()
	s := New(srv.APIKey, WithBaseURL(srv.URL), WithClock(mock))
	srv.FailNext(1, http.StatusTooManyRequests, time.Minute)
	_, err := s.Token()
	require.ErrorIs(t, err, ErrRateLimited)
	mock.Set(mock.Now().Add(-time.Hour))
	_, err = s.Token()
	require.ErrorIs(t, err, ErrRateLimited)
	assert.LessOrEqual(t, asError(t, err).RetryAfter, time.Minute, "the hold keeps its length")
	stepped := mock.Now()
	for mock.Since(stepped) < 2*time.Hour {
		mock.Add(10 * time.Second)
		if _, err = s.Token(); err == nil {
			break
		}
	}
	require.NoError(t, err)
	// Read as if written when first read after the step: at most one more
	// hold, never the hour the clock went back.
	assert.LessOrEqual(t, mock.Since(stepped), 2*time.Minute+10*time.Second)
	assert.Equal(t, 2, srv.Exchanges())
}

// B32: the goroutines of one process take turns at a directory's lock,
// first come first served, within the same bounded wait; a waiter that
// gives up leaves the queue.
func TestLockTurnsInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		release, ok := takeTurn(dir, lockWait)
		require.True(t, ok)
		v, _ := turns.Load(dir)
		q := v.(*turnQueue)
		queued := func() int { q.mu.Lock(); defer q.mu.Unlock(); return len(q.waiters) }
		var order []string
		var mu sync.Mutex
		wait := func(name string) {
			r, ok := takeTurn(dir, 10*time.Second)
			mu.Lock()
			order = append(order, fmt.Sprint(name, ok))
			mu.Unlock()
			if ok {
				time.Sleep(time.Second)
				r()
			}
		}
		go wait("b")
		synctest.Wait()
		go wait("c")
		synctest.Wait()
		assert.Equal(t, 2, queued())
		_, ok = takeTurn(dir, lockWait)
		assert.False(t, ok, "a third waiter gives up after lockWait")
		assert.Equal(t, 2, queued(), "and leaves the queue")
		release()
		time.Sleep(3 * time.Second)
		synctest.Wait()
		mu.Lock()
		assert.Equal(t, []string{"btrue", "ctrue"}, order)
		mu.Unlock()
		assert.Zero(t, queued())
		r, ok := takeTurn(dir, 0)
		require.True(t, ok, "the turn is free again")
		r()
	})
}
