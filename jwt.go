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
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	var c struct {
		Exp *json.Number `json:"exp"`
		Iat *json.Number `json:"iat"`
	}
	if json.Unmarshal(payload, &c) != nil || c.Exp == nil {
		return time.Time{}, time.Time{}, false
	}
	exp, ok = unixTime(*c.Exp)
	if !ok {
		return time.Time{}, time.Time{}, false
	}
	if c.Iat != nil {
		iat, _ = unixTime(*c.Iat)
	}
	return exp, iat, true
}

// unixTime converts a NumericDate, rejecting values outside years 1970–9999.
func unixTime(n json.Number) (time.Time, bool) {
	f, err := n.Float64()
	if err != nil || f <= 0 || f > 253402300799 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}
