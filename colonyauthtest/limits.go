package colonyauthtest

// The real server's limits: answers per address and rolling hour, and each
// two-factor code once per window.

import (
	"net"
	"net/http"
	"time"
)

// count counts an answer for addr against the rate limit; it returns how
// long until a slot frees if the limit is passed (0: within it). s.mu is
// held.
func (s *Server) count(addr string) time.Duration {
	if s.limit <= 0 {
		return 0
	}
	now := s.clock.Now()
	if s.answered == nil {
		s.answered = map[string][]time.Time{}
	}
	seen := s.answered[addr]
	i := 0
	for i < len(seen) && now.Sub(seen[i]) >= time.Hour { // oldest first
		i++
	}
	seen = append(seen[i:], now)
	s.answered[addr] = seen
	if len(seen) <= s.limit {
		return 0
	}
	return seen[len(seen)-s.limit].Add(time.Hour).Sub(now)
}

// useTOTP accepts a code once per 30 s window, as the real server does.
func (s *Server) useTOTP(code string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	window := s.clock.Now().Unix() / 30
	if w, ok := s.totpUsed[code]; ok && w == window {
		return false
	}
	if s.totpUsed == nil {
		s.totpUsed = map[string]int64{}
	}
	s.totpUsed[code] = window
	return true
}

// clientAddr is the host of r's RemoteAddr: the address the limit counts.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// RateLimited returns how many 429s the rate limit of WithRateLimit has
// answered.
func (s *Server) RateLimited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if r.Status == http.StatusTooManyRequests && r.Path == "/auth/token" && r.limited {
			n++
		}
	}
	return n
}
