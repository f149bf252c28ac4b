package colonyauthtest

// The tokens the fake issues: HS256 JWTs with iat, exp and a generation
// (RevokeAll rejects older ones).

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

type claims struct {
	Sub string `json:"sub"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
	Gen int    `json:"gen"`
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

func (s *Server) sign(gen int, now time.Time, life time.Duration) string {
	payload, _ := json.Marshal(claims{Sub: "agent-1", Iat: now.Unix(), Exp: now.Add(life).Unix(), Gen: gen})
	unsigned := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return unsigned + "." + s.mac(unsigned)
}

func (s *Server) mac(text string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(text))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// verify checks a token as the API would; it returns why it is refused.
func (s *Server) verify(tok string) (claims, string) {
	var c claims
	i := strings.LastIndexByte(tok, '.')
	if i < 0 || !hmac.Equal([]byte(tok[i+1:]), []byte(s.mac(tok[:i]))) {
		return c, "Invalid token"
	}
	_, payload, _ := strings.Cut(tok[:i], ".")
	data, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(data, &c) != nil {
		return c, "Invalid token"
	}
	s.mu.Lock()
	revoked := c.Gen < s.revoked
	s.mu.Unlock()
	switch {
	case revoked:
		return c, "Token revoked"
	case !s.clock.Now().Before(time.Unix(c.Exp, 0)):
		return c, "Token expired"
	}
	return c, ""
}
