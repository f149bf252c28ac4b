package colonyauth

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/require"
	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// Tests run in testing/synctest bubbles: time there is fake and moves only
// when every goroutine is blocked, so retry schedules of minutes and token
// lives of a day take no real time, and time.Since measures them exactly.
// Servers are reached in memory (colonyauthtest.Server.Client, or
// handlerClient), never through sockets.

// bubble runs f in a synctest bubble.
func bubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	synctest.Test(t, f)
}

// newFake returns an in-memory fake Colony and a source for its key.
func newFake(t *testing.T, opts ...Option) (*colonyauthtest.Server, *TokenSource) {
	t.Helper()
	srv := colonyauthtest.NewUnstarted()
	return srv, New(srv.APIKey, append([]Option{WithBaseURL(srv.URL), WithHTTPClient(srv.Client())}, opts...)...)
}

// roundTrip adapts a function to http.RoundTripper.
type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// handlerClient serves every request with h, in memory.
func handlerClient(h http.HandlerFunc) *http.Client {
	return &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		if r.Body == nil {
			r.Body = http.NoBody // as a server would see it
		}
		rec := httptest.NewRecorder()
		h(rec, r)
		resp := rec.Result()
		resp.Request = r
		return resp, nil
	})}
}

// answer writes status and body with a JSON content type.
func answer(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

const testKey = "col_TestKeyTestKeyTestKeyTestKeyTestKeyTestKey123"

// sleepClock records every delay the source sleeps through its clock.
type sleepClock struct {
	clock.Clock
	mu     sync.Mutex
	sleeps []time.Duration
}

func (c *sleepClock) Timer(d time.Duration) *clock.Timer {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.mu.Unlock()
	return c.Clock.Timer(d)
}

func (c *sleepClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

func seconds(ss ...int) []time.Duration {
	var out []time.Duration
	for _, s := range ss {
		out = append(out, time.Duration(s)*time.Second)
	}
	return out
}

// logBuffer is a slog handler target that keeps every record as text.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// mustToken calls Token and fails the test on error.
func mustToken(t *testing.T, s *TokenSource) *oauth2.Token {
	t.Helper()
	tok, err := s.Token()
	require.NoError(t, err)
	return tok
}

// asError extracts the *Error, failing the test if err is not one.
func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	require.ErrorAs(t, err, &e)
	return e
}

var background = context.Background()

// refreshAt is when a token obtained at obtained, living life, asks to be
// refreshed: at 40–60 % of its life, drawn from the token (B6).
func refreshAt(tok *oauth2.Token, obtained time.Time, life time.Duration) time.Time {
	return obtained.Add(refreshAfter(tok.AccessToken, life))
}

// within runs f and returns its error; if f has not returned after d (of
// the bubble's time), it calls cancel (which must end f: the source's
// WithContext) and fails the test at once, instead of hanging until the
// test binary's timeout.
func within(t *testing.T, d time.Duration, cancel func(), f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cancel()
		<-done
		t.Fatalf("still waiting after %v", d)
		return nil
	}
}
