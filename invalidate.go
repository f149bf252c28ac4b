package colonyauth

// A token the API rejected (B11, B27): Invalidate, and the wait that keeps
// an API rejecting every token from costing an exchange per request.

import (
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// Invalidate tells the source that tok was rejected (the API answered 401):
// if tok is the current token it is dropped, with any remembered failure and
// its cache entry, and the next call exchanges the key again (even within
// the minute that otherwise separates two exchanges of one key). Any other
// token is ignored, so a late 401 for an old token cannot drop a new one.
func (s *TokenSource) Invalidate(tok *oauth2.Token) {
	if s == nil || s.source == nil || tok == nil {
		return
	}
	s.mu.Lock()
	st := s.cur.Load()
	if st == nil || st.tok.AccessToken != tok.AccessToken {
		s.mu.Unlock()
		return
	}
	s.cur.Store(nil)
	s.failErr, s.failUntil, s.force = nil, time.Time{}, true
	s.holdAfterRejects(st)
	s.mu.Unlock()

	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	s.revoked = tok.AccessToken
	s.deleteCache()
}

// holdAfterRejects counts tokens invalidated within a minute of their
// exchange (B27): the first is exchanged again at once, but while it
// repeats the next exchange waits a minute from the last, then 2, 4, 8
// and at most 10 minutes, so that an API that rejects every token costs a
// few exchanges an hour, not one per request. s.mu is held.
func (s *TokenSource) holdAfterRejects(st *state) {
	now := s.clock.Now()
	fresh := now.Sub(st.obtained) < minExchange
	if !fresh || now.Sub(s.lastReject) > 2*maxServerWait {
		s.rejects = 0
	}
	if !fresh {
		return
	}
	s.rejects++
	s.lastReject = now
	if s.rejects < 2 {
		return
	}
	wait := min(minExchange<<min(s.rejects-2, 4), maxServerWait)
	if until := st.obtained.Add(wait); until.After(now) {
		s.failUntil, s.failAt = until, now
		s.failErr = &Error{kind: ErrRateLimited, Message: fmt.Sprintf(
			"the API rejected the last %d tokens within a minute of their exchange; nothing will be sent until the next exchange is due (is the base URL the API that issued them?)", s.rejects)}
	}
}
