package colonyauth

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// jwtClaims reads the exp and iat claims (Unix seconds) from a JWT's
// payload. The signature is not checked: the token is the server's answer
// over TLS, and the claims only decide when to ask for a new one. ok is
// false when tok is not a JWT or has no exp.
func jwtClaims(tok string) (exp, iat time.Time, ok bool) {
	_, rest, ok1 := strings.Cut(tok, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return time.Time{}, time.Time{}, false
	}
	data, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(payload, "="))
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	var c struct {
		Exp float64 `json:"exp"` // NumericDate: JSON numbers only
		Iat float64 `json:"iat"`
	}
	if json.Unmarshal(data, &c) != nil {
		return time.Time{}, time.Time{}, false
	}
	exp, ok = unixTime(c.Exp)
	if !ok {
		return time.Time{}, time.Time{}, false
	}
	iat, _ = unixTime(c.Iat)
	return exp, iat, true
}

// unixTime converts a NumericDate, rejecting values outside years 1970–9999
// (0, the value of an absent claim, included).
func unixTime(f float64) (time.Time, bool) {
	if !(f > 0 && f <= 253402300799) {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}
