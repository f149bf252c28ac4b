package colonyauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaultRetrySchedule(t *testing.T) {
	r := DefaultRetry()
	var delays []time.Duration
	for n := range r.MaxRetries {
		delays = append(delays, r.Delay(n))
	}
	assert.Equal(t, seconds(2, 4, 8, 16, 32, 60), delays)
	assert.Equal(t, 122*time.Second, r.Budget())
	assert.Equal(t, []int{502, 503, 504}, r.RetryOn)
	assert.Equal(t, 60*time.Second, r.Delay(1000), "no overflow for large n")
	assert.Equal(t, time.Duration(0), RetryConfig{}.Budget(), "zero value: one attempt, no sleep")
	assert.Equal(t, 2*time.Second, RetryConfig{}.Delay(0), "zero BaseDelay means 2s")
}

// B2: a burst of three 502s costs exactly 2+4+8 s, slept on the source's clock.
func TestRetryBurstThenSuccess(t *testing.T) {
	bubble(t, func(t *testing.T) {
		clk := &sleepClock{Clock: clock.New()}
		srv, s := newFake(t, WithClock(clk))
		srv.FailNext(3, http.StatusBadGateway, 0)
		start := time.Now()
		tok := mustToken(t, s)
		assert.NotEmpty(t, tok.AccessToken)
		assert.Equal(t, seconds(2, 4, 8), clk.Sleeps())
		assert.Equal(t, 14*time.Second, time.Since(start))
		assert.Equal(t, 4, srv.Exchanges())
	})
}

// B2: an endless 502 makes 7 attempts over exactly 122 s, then ErrUnavailable.
func TestRetryBudgetSpent(t *testing.T) {
	bubble(t, func(t *testing.T) {
		clk := &sleepClock{Clock: clock.New()}
		ctx, cancel := context.WithCancel(background)
		defer cancel()
		srv, s := newFake(t, WithClock(clk), WithContext(ctx))
		srv.Down(http.StatusBadGateway)
		start := time.Now()
		err := within(t, 10*time.Minute, cancel, func() error { _, err := s.Token(); return err })
		require.ErrorIs(t, err, ErrUnavailable)
		e := asError(t, err)
		assert.Equal(t, 7, e.Attempts)
		assert.Equal(t, http.StatusBadGateway, e.StatusCode)
		assert.Equal(t, seconds(2, 4, 8, 16, 32, 60), clk.Sleeps())
		assert.Equal(t, 122*time.Second, time.Since(start))
		assert.Equal(t, 7, srv.Exchanges())
		assert.Contains(t, err.Error(), "7 attempts")
	})
}

// B2: the sleeps are the injected clock's: a mock that is not advanced
// holds the second attempt back, however long real (bubble) time runs.
func TestRetrySleepsOnInjectedClock(t *testing.T) {
	bubble(t, func(t *testing.T) {
		mock := clock.NewMock()
		srv, s := newFake(t, WithClock(mock))
		srv.FailNext(2, http.StatusServiceUnavailable, 0)
		done := make(chan error, 1)
		go func() { _, err := s.Token(); done <- err }()

		synctest.Wait()
		assert.Equal(t, 1, srv.Exchanges())
		time.Sleep(time.Hour) // bubble time; the mock stands still
		assert.Equal(t, 1, srv.Exchanges())
		mock.Add(2*time.Second - time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, 1, srv.Exchanges(), "the first delay is 2 s, not less")
		mock.Add(time.Nanosecond)
		synctest.Wait()
		assert.Equal(t, 2, srv.Exchanges())
		mock.Add(4 * time.Second)
		require.NoError(t, <-done)
		assert.Equal(t, 3, srv.Exchanges())
	})
}

func TestSingleAttempt(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t, WithRetry(RetryConfig{MaxRetries: 0}))
		srv.Down(http.StatusBadGateway)
		_, err := s.Token()
		require.ErrorIs(t, err, ErrUnavailable)
		assert.Equal(t, 1, asError(t, err).Attempts)
		assert.Equal(t, 1, srv.Exchanges())
	})
}

// B3: which statuses are retried.
func TestRetriedStatuses(t *testing.T) {
	for status, retried := range map[int]bool{
		502: true, 503: true, 504: true,
		400: false, 401: false, 403: false, 404: false, 429: false, 500: false,
	} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				srv, s := newFake(t)
				srv.FailNext(1, status, 0)
				_, err := s.Token()
				if retried {
					require.NoError(t, err)
					assert.Equal(t, 2, srv.Exchanges())
					return
				}
				require.Error(t, err)
				assert.Equal(t, 1, srv.Exchanges())
				assert.Equal(t, status, asError(t, err).StatusCode)
			})
		})
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// B3: which transport errors are retried.
func TestRetriedTransportErrors(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		retried bool
	}{
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"timeout", &net.OpError{Op: "read", Net: "tcp", Err: timeoutError{}}, true},
		{"unexpected EOF", io.ErrUnexpectedEOF, true},
		{"temporary DNS failure", &net.DNSError{Err: "server misbehaving", Name: "thecolony.ai", IsTemporary: true}, true},
		{"DNS timeout", &net.DNSError{Err: "timeout", Name: "thecolony.ai", IsTimeout: true}, true},
		{"no such host", &net.DNSError{Err: "no such host", Name: "thecolony.ai", IsNotFound: true}, false},
		{"unknown authority", x509.UnknownAuthorityError{}, false},
		{"bad certificate", &tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}, false},
		{"hostname mismatch", x509.HostnameError{Host: "thecolony.ai", Certificate: &x509.Certificate{}}, false},
		{"not TLS", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				var calls atomic.Int32
				hc := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
					calls.Add(1)
					return nil, c.err
				})}
				s := New(testKey, WithHTTPClient(hc), WithRetry(RetryConfig{MaxRetries: 2}))
				_, err := s.Token()
				e := asError(t, err)
				assert.ErrorIs(t, err, c.err)
				if c.retried {
					assert.EqualValues(t, 3, calls.Load())
					assert.ErrorIs(t, err, ErrUnavailable)
				} else {
					assert.EqualValues(t, 1, calls.Load())
					assert.NotErrorIs(t, err, ErrUnavailable)
				}
				assert.Equal(t, 0, e.StatusCode)
				assert.Equal(t, int(calls.Load()), e.Attempts)
			})
		})
	}
}

// B4: Retry-After, in seconds or as a date, replaces the computed delay.
func TestRetryAfterReplacesDelay(t *testing.T) {
	for _, c := range []struct {
		name  string
		value func(now time.Time) string
		want  time.Duration
	}{
		{"seconds", func(time.Time) string { return "5" }, 5 * time.Second},
		{"http date", func(now time.Time) string { return now.Add(7 * time.Second).UTC().Format(http.TimeFormat) }, 7 * time.Second},
		{"exactly MaxDelay", func(time.Time) string { return "60" }, 60 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				clk := &sleepClock{Clock: clock.New()}
				var n atomic.Int32
				hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
					if n.Add(1) == 1 {
						w.Header().Set("Retry-After", c.value(time.Now()))
						answer(w, 503, `{"detail":"maintenance"}`)
						return
					}
					answer(w, 200, `{"access_token":"abc","token_type":"bearer"}`)
				})
				s := New(testKey, WithHTTPClient(hc), WithClock(clk))
				mustToken(t, s)
				assert.Equal(t, []time.Duration{c.want}, clk.Sleeps())
			})
		})
	}
}

// B4: a Retry-After longer than MaxDelay ends the exchange at once.
func TestRetryAfterTooLong(t *testing.T) {
	bubble(t, func(t *testing.T) {
		clk := &sleepClock{Clock: clock.New()}
		srv, s := newFake(t, WithClock(clk))
		srv.FailNext(1, http.StatusServiceUnavailable, 120*time.Second)
		_, err := s.Token()
		require.ErrorIs(t, err, ErrUnavailable)
		e := asError(t, err)
		assert.Equal(t, 120*time.Second, e.RetryAfter)
		assert.Equal(t, 1, e.Attempts)
		assert.Empty(t, clk.Sleeps())
		assert.Equal(t, 1, srv.Exchanges())
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 21, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"0":                             0,
		"-5":                            0,
		"30":                            30 * time.Second,
		" 30 ":                          30 * time.Second,
		"99999999999999999999":          0, // not a number Go can hold, not a date
		"9999999999":                    24 * time.Hour,
		"Thu, 21 May 2026 12:01:00 GMT": time.Minute,
		"Thu, 21 May 2026 11:00:00 GMT": 0,
		"soon":                          0,
	} {
		assert.Equal(t, want, parseRetryAfter(in, now), "Retry-After %q", in)
	}
}

// Jitter: every delay lies in [d*(1-j), d]; with 0 the schedule is exact.
func TestJitter(t *testing.T) {
	bubble(t, func(t *testing.T) {
		clk := &sleepClock{Clock: clock.New()}
		srv, s := newFake(t, WithClock(clk), WithRetry(RetryConfig{MaxRetries: 6, Jitter: 0.5}))
		srv.Down(http.StatusBadGateway)
		_, err := s.Token()
		require.ErrorIs(t, err, ErrUnavailable)
		sleeps := clk.Sleeps()
		require.Len(t, sleeps, 6)
		exact := true
		for n, got := range sleeps {
			d := DefaultRetry().Delay(n)
			assert.GreaterOrEqual(t, got, d/2, "delay %d", n)
			assert.LessOrEqual(t, got, d, "delay %d", n)
			exact = exact && got == d
		}
		assert.False(t, exact, "jitter changed nothing")
	})
	for range 1000 {
		d := jitter(10*time.Second, 0.2)
		require.True(t, d >= 8*time.Second && d <= 10*time.Second, "%v", d)
	}
	assert.Equal(t, 10*time.Second, jitter(10*time.Second, 0))
}

func TestRetryConfigValidation(t *testing.T) {
	for name, r := range map[string]RetryConfig{
		"negative retries":      {MaxRetries: -1},
		"MaxDelay < BaseDelay":  {BaseDelay: 10 * time.Second, MaxDelay: 5 * time.Second},
		"negative delay":        {BaseDelay: -time.Second},
		"jitter above 1":        {Jitter: 1.5},
		"negative jitter":       {Jitter: -0.1},
		"429 in RetryOn":        {RetryOn: []int{502, 429}},
		"401 in RetryOn":        {RetryOn: []int{401}},
		"success in RetryOn":    {RetryOn: []int{200}},
		"MaxDelay < default 2s": {MaxDelay: time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			err := r.validate()
			require.Error(t, err)
			var e *Error
			require.True(t, errors.As(err, &e))
			assert.Contains(t, err.Error(), "colonyauth: invalid configuration")
		})
	}
	require.NoError(t, DefaultRetry().validate())
	require.NoError(t, RetryConfig{}.validate())
	require.NoError(t, RetryConfig{Jitter: 1, RetryOn: []int{500, 502, 408}}.validate())
}
