package colonyauth

import (
	"hash/fnv"
	"time"

	"golang.org/x/oauth2"
)

// state is an immutable snapshot of the current token.
type state struct {
	tok      *oauth2.Token // what callers get (&token); Expiry is when the source wants to be asked again
	due      time.Time     // tok.Expiry less the margin: served without locking before this
	expires  time.Time     // exp less the margin: served at all (stale) before this
	exp      time.Time     // the token's real expiry
	obtained time.Time
	margin   time.Duration
	token    oauth2.Token // allocated with the state; reached only through tok
}

// newState derives the refresh and expiry instants of a token obtained at
// obtained (or, from a cache, issued then) that expires at exp. The refresh
// point is drawn in 40–60 % of the token's life from the token itself, so a
// fleet started together spreads its refreshes over hours, and a test is
// reproducible (B6).
func newState(access string, obtained, exp time.Time) *state {
	life := exp.Sub(obtained)
	margin := min(expiryDelta, life/4)
	return stateAsking(access, obtained.Add(refreshAfter(access, life)), obtained, exp, margin)
}

// refreshAfter is the part of life after which access is refreshed: a
// fraction in [0.4, 0.6] that a hash of the token picks.
func refreshAfter(access string, life time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(access))
	f := 0.4 + 0.2*float64(h.Sum64()>>11)/(1<<53)
	return time.Duration(f * float64(life))
}

// stateAsking returns a state whose token asks to be refreshed at ask.
func stateAsking(access string, ask, obtained, exp time.Time, margin time.Duration) *state {
	st := &state{due: ask.Add(-margin), expires: exp.Add(-margin), exp: exp, obtained: obtained, margin: margin}
	st.token = *(&oauth2.Token{AccessToken: access, TokenType: "Bearer", Expiry: ask}).WithExtra(map[string]any{"expires_at": exp})
	st.tok = &st.token
	return st
}

// askAt returns a new state for st's token asking to be refreshed at t
// (never after exp). It copies no Token: oauth2.ReuseTokenSource writes to
// the tokens it is given.
func (st *state) askAt(t time.Time) *state {
	return stateAsking(st.tok.AccessToken, minTime(t, st.exp), st.obtained, st.exp, st.margin)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
