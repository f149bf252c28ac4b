package colonyauth

import "strings"

// WithTOTP makes every exchange attempt send a two-factor code, for
// accounts with 2FA enabled. code is called once per attempt (codes change
// and each is accepted once), and what it returns is checked before
// sending: 6–8 digits, or a 10–16 character recovery code. An error from
// code is returned, wrapped, with no request sent. With a cache, tokens
// minted with a code are kept in an entry of their own: a source of the
// same key without WithTOTP never loads them.
func WithTOTP(code func() (string, error)) Option {
	return func(o *options) {
		if code == nil {
			o.fail("invalid option: WithTOTP(nil)")
			return
		}
		o.totp = code
	}
}

// totpCode calls the WithTOTP function and checks its answer.
func (s *TokenSource) totpCode() (string, *Error) {
	code, err := s.totp()
	if err != nil {
		return "", &Error{Message: "the WithTOTP function failed", Err: s.red.wrap(err)}
	}
	if msg := checkTOTP(code); msg != "" {
		return "", &Error{Message: msg, kind: ErrTwoFactorInvalid}
	}
	return code, nil
}

// checkTOTP says what is wrong with a two-factor code, or "" if nothing.
// It never repeats the code: it may be a secret.
func checkTOTP(c string) string {
	digits, alnum, base32 := true, true, true
	for _, r := range c {
		isDigit := r >= '0' && r <= '9'
		isLetter := (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z')
		digits = digits && isDigit
		alnum = alnum && (isDigit || isLetter)
		base32 = base32 && (isLetter || (r >= '2' && r <= '7') || r == '=' || r == ' ')
	}
	n := len(c)
	switch {
	case n == 0:
		return "the two-factor code is empty"
	case digits && n >= 6 && n <= 8:
		return ""
	case digits:
		return "the two-factor code must have 6 to 8 digits"
	case alnum && n >= 10 && n <= 16:
		return "" // a recovery code
	case base32 && n > 16:
		// Longer than any code the server accepts, and in the alphabet of
		// TOTP secrets: the secret was passed instead of a code from it.
		return "this looks like the TOTP secret, not a code: pass WithTOTP a function that computes the current code from the secret"
	case strings.ContainsAny(c, " \t\r\n"):
		return "the two-factor code contains whitespace: remove it"
	}
	return "the two-factor code must be 6 to 8 digits, or a 10 to 16 character recovery code of letters and digits"
}
