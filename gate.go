package colonyauth

// The decisions on the host record before an attempt (B8, B18, B20–B22,
// B27): may a flight send now, and if not, until when and with what error.
// hostrecord.go has the record itself and what an attempt's outcome
// changes in it.

import (
	"net/http"
	"slices"
	"time"
)

// gate decides whether a flight may send an attempt now, and reserves what
// it needs: a slot of the hour's budget, the key, the probe lease. The
// checks go from the narrowest to the widest: the key, the hour's budget,
// the outage. A source that is refused or waits records its need, so that
// the others see it (B20).
func (h *hostRecord) gate(n need, now time.Time, staleGap time.Duration) (v verdict) {
	h.prune(now)
	k := h.keyRec(n.key)
	k.Exp = 0
	if n.stale {
		k.Exp = ms(n.exp) // so that sources without a token leave it a slot
	}
	if v, stop := h.keyVerdict(k, n, now); stop {
		if k.Until <= ms(now) || n.force { // not a remembered failure: a need that waits
			k.Want = ms(laterOf(v.until, now).Add(needLife))
		}
		return v
	}
	defer func() {
		if v.act != send {
			k.Want = ms(laterOf(v.until, now).Add(v.wait + needLife))
		}
	}()
	if v, stop := h.budgetVerdict(n, now); stop {
		return v
	}
	knownUp := h.Down == 0 && h.OK != 0 && now.Sub(at(h.OK)) < upWindow
	if !knownUp && h.Prober != n.owner {
		if v, stop := h.outageVerdict(n, now, staleGap); stop {
			return v
		}
	}
	v = verdict{act: send}
	if n.limit > 0 {
		v.slot = ms(now)
		for slices.Contains(h.Slots, v.slot) { // one slot, one value
			v.slot++
		}
		h.Slots = append(h.Slots, v.slot)
	}
	if !knownUp {
		h.Prober, h.Lease = n.owner, ms(now.Add(leaseTime))
		h.Single = h.Down != 0 && h.capped(n)
	}
	k.Busy, k.BusyTill, k.Want = n.owner, ms(now.Add(leaseTime)), 0
	return v
}

// denyUntil is a verdict that nothing may be sent before until; err, if
// any, is what a caller without a token gets.
func denyUntil(now, until time.Time, err *Error) (verdict, bool) {
	if err != nil {
		err.RetryAfter = roundUp(until.Sub(now))
	}
	return verdict{act: deny, until: until, err: err}, true
}

// keyVerdict: the key's remembered failure (B8), a 429 hold (B20), another
// source exchanging the same key, or one that just did (B22, B27).
func (h *hostRecord) keyVerdict(k *keyRecord, n need, now time.Time) (verdict, bool) {
	if k.Until > ms(now) && !n.force {
		return denyUntil(now, at(k.Until), k.Fail.error(now))
	}
	if h.Hold > ms(now) {
		e := h.Fail.error(now)
		e.kind, e.Attempts = ErrRateLimited, 0
		if e.StatusCode != http.StatusTooManyRequests {
			e.StatusCode, e.Code, e.Message = http.StatusTooManyRequests, "", "a 429 seen by a source sharing this cache holds them all"
		}
		return denyUntil(now, at(h.Hold), e)
	}
	if k.Busy != "" && k.Busy != n.owner && k.BusyTill > ms(now) {
		if n.stale {
			return denyUntil(now, at(k.BusyTill), nil)
		}
		return verdict{act: wait, wait: pollInterval}, true
	}
	if got, gap := at(k.Obtained), k.gap(); k.Obtained != 0 && now.Sub(got) < gap && !n.force {
		return verdict{act: reload, until: got.Add(gap)}, true
	}
	return verdict{}, false
}

// budgetVerdict: the hour's answers (B20). Valid tokens about to expire go
// before sources without one (those fail either way); an early refresh
// takes only the first two thirds of the slots, and only while no source
// without a token, or with a token that expires sooner, waits for one.
func (h *hostRecord) budgetVerdict(n need, now time.Time) (verdict, bool) {
	if n.limit <= 0 {
		return verdict{}, false
	}
	used := len(h.Slots)
	if reserved := h.expiringSoon(n.key, now); !n.stale && used+reserved >= n.limit && used < n.limit {
		until := now.Add(time.Minute)
		if keep := n.limit - reserved - 1; keep >= 0 && used > keep {
			until = h.freeAt(keep)
		}
		return denyUntil(now, until, &Error{Message: "this host's budget of answers from /auth/token is kept for tokens about to expire", kind: ErrRateLimited, local: true})
	}
	if used >= n.limit {
		return denyUntil(now, h.freeAt(n.limit-1), &Error{Message: "this host's budget of answers from /auth/token for the hour is spent", kind: ErrRateLimited, local: true})
	}
	if !n.early {
		return verdict{}, false
	}
	if keep := (2*n.limit+2)/3 - 1; used > keep { // two thirds of the slots: 19 kept means the 20th is taken
		return denyUntil(now, h.freeAt(keep), nil)
	}
	if h.moreUrgent(n, now) {
		return denyUntil(now, now.Add(needLife), nil)
	}
	return verdict{}, false
}

// moreUrgent reports whether another key waits for a slot without a valid
// token, or with one that expires before n's: an early refresh leaves it
// the slot (B20).
func (h *hostRecord) moreUrgent(n need, now time.Time) bool {
	for k, r := range h.Keys {
		if k != n.key && r.Want > ms(now) && (r.Exp <= ms(now) || r.Exp < ms(n.exp)) {
			return true
		}
	}
	return false
}

// outageVerdict: while /auth/token is not known to be up, one prober at a
// time (B21), on the schedule of B2 and B18, at most 30 single attempts an
// hour, with a last chance for a valid token about to expire. A caller
// without a token waits for the prober's outcome as long as its own B2
// schedule would have lasted.
func (h *hostRecord) outageVerdict(n need, now time.Time, staleGap time.Duration) (verdict, bool) {
	if h.Prober != "" { // another source probes
		switch {
		case n.stale:
			return denyUntil(now, at(h.Lease), nil)
		case h.Down == 0:
			return verdict{act: wait, wait: pollInterval}, true
		}
		return h.waitOrDeny(n, now, h.next(false, n.retry, staleGap), true)
	}
	if h.Down == 0 {
		return verdict{}, false // nobody knows: this source asks first
	}
	next := h.next(n.stale, n.retry, staleGap)
	if n.stale {
		// A last chance: a valid token that would expire before the next
		// probe gets one just before, so that a recovery in between still
		// saves it.
		lc := laterOf(n.exp.Add(-lastChanceLead), at(h.Last).Add(minProbeGap))
		if h.NotBefore != 0 {
			lc = laterOf(lc, at(h.NotBefore))
		}
		next = minTime(next, lc)
	}
	if singles := len(h.Singles); h.capped(n) && singles >= probeCap { // B21: ≤ 30 an hour
		next = laterOf(next, at(h.Singles[singles-probeCap]).Add(time.Hour))
	}
	if !now.Before(next) {
		return verdict{}, false
	}
	switch {
	case n.stale:
		return denyUntil(now, next, nil)
	case h.Tries <= n.retry.MaxRetries: // the budget is not spent: take it over
		h.Prober, h.Lease = n.owner, ms(next.Add(leaseTime))
		return verdict{act: wait, wait: next.Sub(now)}, true
	}
	return h.waitOrDeny(n, now, next, false)
}

// waitOrDeny answers a caller without a token during an outage, when the
// next attempt (another source's, or its own) is due at next. It waits for
// it while its own B2 schedule would have lasted (never worse off than
// alone); once that wait is spent it gets the shared error, and in the
// same outage fails at once until an attempt is due (B18, B21).
func (h *hostRecord) waitOrDeny(n need, now, next time.Time, otherProbes bool) (verdict, bool) {
	if now.Before(n.deadline) && h.Down > n.spent {
		// Until the attempt is due, then every pollInterval while it runs.
		w := max(min(next.Sub(now), n.deadline.Sub(now)), pollInterval)
		return verdict{act: wait, wait: w, behind: otherProbes}, true
	}
	v, _ := denyUntil(now, laterOf(next, now.Add(time.Second)), h.sharedError(otherProbes))
	v.spent = true
	return v, true
}

// capped reports whether an attempt during an outage counts against the
// 30 an hour of B21: every single attempt but the budget's and the first
// two after it (at 30 s and 60 s), which B21 allows in the outage's first
// hour (≤ 40).
func (h *hostRecord) capped(n need) bool {
	return n.stale || h.Tries >= n.retry.MaxRetries+1+len(probeGaps)-1
}

// waiting reports whether a valid token waits for its refresh: then the
// no-token cadence leaves room in the hour for its last chance.
func (h *hostRecord) waiting(now time.Time) bool {
	for _, r := range h.Keys {
		if r.Exp > ms(now) {
			return true
		}
	}
	return false
}

// expiringSoon counts the other keys whose valid token expires within two
// hours and waits for its refresh.
func (h *hostRecord) expiringSoon(key string, now time.Time) int {
	n := 0
	for k, r := range h.Keys {
		if k != key && r.Exp > ms(now) && at(r.Exp).Sub(now) < urgentLeft {
			n++
		}
	}
	return n
}

// sharedError is what a source that may not send returns during an
// outage: the last answer, and that nothing was sent.
func (h *hostRecord) sharedError(otherProbes bool) *Error {
	e := h.Fail.error(time.Time{})
	e.kind, e.Attempts = ErrUnavailable, 0
	e.Message = "/auth/token is failing; nothing was sent before the next attempt is due"
	if otherProbes {
		e.Message = "/auth/token is failing and another source sharing this cache probes it; nothing was sent"
	}
	if h.Fail != nil && h.Fail.Message != "" {
		e.Message += " (last answer: " + h.Fail.Message + ")"
	}
	return e
}
