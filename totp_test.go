package colonyauth

import (
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// B13: the code is sent as totp_code, fetched anew for every attempt.
func TestTOTPSentEachAttempt(t *testing.T) {
	bubble(t, func(t *testing.T) {
		calls := 0
		srv, s := newFake(t, WithTOTP(func() (string, error) { calls++; return "123456", nil }))
		srv.RequireTOTP("123456")
		srv.FailNext(2, http.StatusBadGateway, 0)
		mustToken(t, s)
		assert.Equal(t, 3, calls)
		assert.Equal(t, 3, srv.Exchanges())
		reqs := srv.Requests()
		assert.Equal(t, []string{"api_key", "totp_code"}, reqs[len(reqs)-1].Fields)
	})
}

// B13/B5: a missing or wrong code is a two-factor error, not a key error,
// and is not retried.
func TestTOTPServerErrors(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv, s := newFake(t)
		srv.RequireTOTP("123456")
		_, err := s.Token()
		require.ErrorIs(t, err, ErrTwoFactorRequired)
		assert.NotErrorIs(t, err, ErrInvalidKey)
		assert.Contains(t, err.Error(), "WithTOTP")

		srv, s = newFake(t, WithTOTP(func() (string, error) { return "654321", nil }))
		srv.RequireTOTP("123456")
		_, err = s.Token()
		require.ErrorIs(t, err, ErrTwoFactorInvalid)
		assert.NotErrorIs(t, err, ErrInvalidKey)
		assert.Equal(t, "AUTH_2FA_INVALID", asError(t, err).Code)
		assert.Contains(t, err.Error(), "wait for the next code")
		assert.Contains(t, err.Error(), "do not rotate")
		assert.Equal(t, 1, srv.Exchanges())
	})
}

// B13: codes are checked before sending; the error says what was wrong and
// never repeats the value.
func TestTOTPLocalChecks(t *testing.T) {
	for code, want := range map[string]string{
		"123456":                           "",
		"12345678":                         "",
		"ABCDEFGHIJ":                       "",
		"abcd1234efgh5678":                 "",
		"":                                 "empty",
		"12345":                            "6 to 8 digits",
		"123456789":                        "6 to 8 digits",
		"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP": "looks like the TOTP secret",
		"jbsw y3dp ehpk 3pxp jbsw":         "looks like the TOTP secret",
		"123 456":                          "whitespace",
		"abc-def-ghi":                      "recovery code",
		"ABCDEFGHIJKLMNOPQ1":               "recovery code",
	} {
		t.Run(code, func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				srv, s := newFake(t, WithTOTP(func() (string, error) { return code, nil }))
				srv.RequireTOTP(code)
				_, err := s.Token()
				if want == "" {
					require.NoError(t, err)
					return
				}
				require.ErrorIs(t, err, ErrTwoFactorInvalid)
				assert.Contains(t, err.Error(), want)
				if code != "" {
					assert.NotContains(t, err.Error(), code)
				}
				assert.Zero(t, srv.Exchanges(), "nothing was sent")
				assert.Zero(t, asError(t, err).Attempts)
			})
		})
	}
}

// B13: the function's own error is returned wrapped, with no request sent.
func TestTOTPFunctionError(t *testing.T) {
	bubble(t, func(t *testing.T) {
		errLocked := errors.New("keychain locked")
		srv, s := newFake(t, WithTOTP(func() (string, error) { return "", errLocked }))
		_, err := s.Token()
		require.ErrorIs(t, err, errLocked)
		assert.Contains(t, err.Error(), "keychain locked")
		assert.Zero(t, srv.Exchanges())
	})
}

// B37: a token minted with a second factor is kept in a cache entry of its
// own. A source of the same key without WithTOTP never loads it (the host
// broker serving a caller with the key alone relies on this); a source
// with WithTOTP does.
func TestTwoFactorTokensKeptApart(t *testing.T) {
	bubble(t, func(t *testing.T) {
		srv := colonyauthtest.NewUnstarted()
		srv.RequireTOTP("123456")
		cache := NewMemoryCache()
		opts := []Option{WithBaseURL(srv.URL), WithHTTPClient(srv.Client()), WithCache(cache)}
		code := WithTOTP(func() (string, error) { return "123456", nil })
		mustToken(t, New(srv.APIKey, append(opts, code)...))
		require.Equal(t, 1, srv.Exchanges())

		_, err := New(srv.APIKey, opts...).Token()
		require.ErrorIs(t, err, ErrTwoFactorRequired, "the key alone does not get the two-factor token")
		assert.Equal(t, 2, srv.Exchanges())

		mustToken(t, New(srv.APIKey, append(opts, code)...))
		assert.Equal(t, 2, srv.Exchanges(), "a source with WithTOTP loads it")
	})
}
