package colonyauth

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// Messages never contradict themselves: a failure that retrying cannot fix
// says what the source does ("nothing will be sent for 30s"), not when to
// retry; one that retrying fixes says when, in words ("in 18s"), not a Go
// field name; a remembered failure says it was seen earlier and that
// nothing was sent; a local refusal names this host's budget first.
func TestMessagesNeverContradict(t *testing.T) {
	t.Run("401 and 404 say nothing will be sent", func(t *testing.T) {
		for _, status := range []int{http.StatusUnauthorized, http.StatusNotFound} {
			bubble(t, func(t *testing.T) {
				srv, s := newFake(t)
				srv.FailNext(1, status, 0)
				_, err := s.Token()
				msg := err.Error()
				assert.Contains(t, msg, "nothing will be sent for 30s", status)
				assert.NotContains(t, msg, "retry after", status)
				assert.NotContains(t, msg, "try again in", status)
				assert.Equal(t, 30*time.Second, asError(t, err).RetryAfter, "the field keeps its value")
			})
		}
	})
	t.Run("429 and 5xx say when in words", func(t *testing.T) {
		bubble(t, func(t *testing.T) {
			srv, s := newFake(t)
			srv.FailNext(1, http.StatusTooManyRequests, 18*time.Second)
			_, err := s.Token()
			assert.Contains(t, err.Error(), "try again in 18s")
			assert.NotContains(t, err.Error(), "RetryAfter")

			srv, s = newFake(t, WithRetry(RetryConfig{MaxRetries: 0}))
			srv.FailNext(1, http.StatusBadGateway, 0)
			_, err = s.Token()
			assert.Contains(t, err.Error(), "try again in 30s")
			assert.NotContains(t, err.Error(), "RetryAfter")
		})
	})
	t.Run("a TOTP secret is not told to wait for the next code", func(t *testing.T) {
		bubble(t, func(t *testing.T) {
			_, s := newFake(t, WithTOTP(func() (string, error) { return "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", nil }))
			_, err := s.Token()
			require.ErrorIs(t, err, ErrTwoFactorInvalid)
			assert.NotContains(t, err.Error(), "wait for the next code")
			assert.Contains(t, err.Error(), "not the secret")
		})
	})
	t.Run("a remembered failure says when it was seen", func(t *testing.T) {
		bubble(t, func(t *testing.T) {
			srv, s := newFake(t)
			srv.FailNext(1, http.StatusUnauthorized, 0)
			_, first := s.Token()
			assert.NotContains(t, first.Error(), "ago")
			time.Sleep(12 * time.Second)
			_, err := s.Token()
			assert.Equal(t, 1, srv.Exchanges())
			assert.Contains(t, err.Error(), "seen 12s ago, nothing sent now")
			assert.Contains(t, err.Error(), "nothing will be sent for 18s")
		})
	})
	t.Run("another source's failure says when it was seen", func(t *testing.T) {
		bubble(t, func(t *testing.T) {
			srv := colonyauthtest.NewUnstarted()
			cache := NewMemoryCache()
			a := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithCache(cache))
			b := New(srv.APIKey, WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithCache(cache))
			srv.FailNext(1, http.StatusTooManyRequests, 300*time.Second)
			_, err := a.Token()
			require.ErrorIs(t, err, ErrRateLimited)
			time.Sleep(5 * time.Second)
			_, err = b.Token()
			require.ErrorIs(t, err, ErrRateLimited)
			assert.Contains(t, err.Error(), "seen 5s ago, nothing sent now")
			assert.Contains(t, err.Error(), "try again in 4m55s")
		})
	})
	t.Run("a local refusal names this host's budget first", func(t *testing.T) {
		bubble(t, func(t *testing.T) {
			srv := colonyauthtest.NewUnstarted()
			agents := newHost(srv, 3, NewMemoryCache(), WithHostLimit(2))
			for _, a := range agents[:2] {
				mustToken(t, a.src)
			}
			_, err := agents[2].src.Token()
			require.ErrorIs(t, err, ErrRateLimited)
			msg := err.Error()
			assert.True(t, strings.HasPrefix(msg, "colonyauth: this host's budget"), msg)
			assert.NotContains(t, msg, "rate limited by /auth/token")
			assert.Contains(t, msg, "nothing was sent")
			assert.Contains(t, msg, "try again in 1h0m")
		})
	})
}
