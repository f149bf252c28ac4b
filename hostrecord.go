package colonyauth

// The host record: what the sources sharing a Ledger know of one base
// URL's /auth/token (its hour's budget, a 429 hold, an outage and its
// prober, each key's exchange), and the two decisions made on it under the
// Ledger's lock: whether an attempt may go now (gate), and what its outcome
// changes (record).

import (
	"net/http"
	"slices"
	"time"
)

const (
	slotLife       = time.Hour + time.Second // a counted answer's slot, with a second to spare for clock skew
	upWindow       = time.Minute             // an answer this recent lets sources send side by side
	leaseTime      = attemptTimeout + 5*time.Second
	pollInterval   = 250 * time.Millisecond // while another source exchanges the same key or probes first
	minExchange    = time.Minute            // B27: no token causes more than one exchange a minute
	maxServerWait  = 10 * time.Minute       // B27: the longest a 5xx Retry-After is obeyed
	urgentLeft     = 2 * time.Hour          // B20: a refresh with more left is an early one
	maxRateHold    = time.Hour              // B18: the longest a 429 without Retry-After holds
	lastChanceLead = 15 * time.Second       // a last-chance probe comes this long before the token is unusable
	probeCap       = 30                     // B21: single attempts an hour during an outage, the last chances included
	waitingGap     = 125 * time.Second      // the 120 s cadence while valid tokens wait: 28 an hour, room for last chances
	minProbeGap    = 10 * time.Second       // ... but never sooner than this after the last probe
	needLife       = time.Minute            // a recorded need lasts this long past its wait (B20)
)

// probeGaps are the waits between single attempts once a budget is spent
// (B18): 30 s, 60 s, then 120 s.
var probeGaps = [...]time.Duration{30 * time.Second, 60 * time.Second, 120 * time.Second}

// hostRecord is the shared state of one base URL's /auth/token. Times are
// Unix milliseconds; zero means unset.
type hostRecord struct {
	At        int64                 `json:"at,omitempty"`      // when it was written
	Slots     []int64               `json:"slots,omitempty"`   // counted answers of the last hour, and reservations
	OK        int64                 `json:"ok,omitempty"`      // the last answer from the Colony itself
	Hold      int64                 `json:"hold,omitempty"`    // a 429: nothing is sent before this
	Strikes   int                   `json:"strikes,omitempty"` // consecutive 429s
	Down      int64                 `json:"down,omitempty"`    // failing (5xx, network) since
	Tries     int                   `json:"tries,omitempty"`   // failed attempts in this outage
	Last      int64                 `json:"last,omitempty"`    // the last failed attempt
	NotBefore int64                 `json:"nb,omitempty"`      // a 5xx Retry-After, capped at 10 minutes
	Single    bool                  `json:"single,omitempty"`  // the probe under way is a single attempt ...
	Singles   []int64               `json:"singles,omitempty"` // ... and those of the last hour: at most 30
	Prober    string                `json:"prober,omitempty"`  // who may send while not known to be up ...
	Lease     int64                 `json:"lease,omitempty"`   // ... until
	Fail      *failure              `json:"fail,omitempty"`    // the last failure, for the shared error
	Keys      map[string]*keyRecord `json:"keys,omitempty"`
}

// keyRecord is the shared state of one key (by its cache key).
type keyRecord struct {
	Busy     string   `json:"busy,omitempty"`      // a source exchanging this key ...
	BusyTill int64    `json:"busy_till,omitempty"` // ... until
	Obtained int64    `json:"obtained,omitempty"`  // the last token
	Until    int64    `json:"until,omitempty"`     // a remembered failure (B8) ...
	Fail     *failure `json:"fail,omitempty"`      // ... and what it was
	Exp      int64    `json:"exp,omitempty"`       // a valid token waiting for its refresh expires then
	Gap      int64    `json:"gap,omitempty"`       // ms before the key's next exchange (B27); 0 = a minute
	Want     int64    `json:"want,omitempty"`      // a source of this key waits for a slot until then (B20)
}

// gap is the least time between two exchanges of the key.
func (k *keyRecord) gap() time.Duration {
	if k.Gap > 0 {
		return time.Duration(k.Gap) * time.Millisecond
	}
	return minExchange
}

// exchangeGap is the least time between two exchanges of a key whose token
// lives life (B27): a minute, so that a token that expires in a second
// causes one exchange a minute, not nine a second; but a token that lives
// 30 s or more may be refreshed at its refresh point (40 % of its life at
// the earliest), so that it never has to expire first.
func exchangeGap(life time.Duration) time.Duration {
	if life < 30*time.Second {
		return minExchange
	}
	return min(minExchange, life*4/10)
}

// need is what a flight asks the ledger for.
type need struct {
	owner string
	key   string    // the cache key
	stale bool      // the source has a valid token: never wait, ask again later
	early bool      // ... with more than two hours left (B20)
	force bool      // right after Invalidate: the one-a-minute rule does not apply
	exp   time.Time // stale: when the valid token becomes unusable
	limit int       // WithHostLimit, 0 = none
	retry RetryConfig
	// A caller without a token waits for another source's probes until
	// deadline (its own B2 budget from its first call), unless it has
	// already spent that wait, or its budget, in this outage: at spent,
	// after the outage began (B21).
	deadline time.Time
	spent    int64
	red      redactor // the writer's: what goes into the record is redacted with it
}

// Verdicts of the gate.
const (
	send   = iota // go ahead (a slot is reserved if counted)
	wait          // another source is at it: wait v.wait, then ask again
	reload        // another source got a token moments ago: read the cache
	deny          // nothing may be sent before v.until; v.err says why
)

type verdict struct {
	act    int
	wait   time.Duration
	until  time.Time
	err    *Error
	slot   int64 // the reserved slot, 0 if none
	behind bool  // wait: for another source's probes of an outage
	spent  bool  // deny: this caller has spent its wait in this outage
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func at(m int64) time.Time { return time.UnixMilli(m) }

// prune drops slots older than slotLife and key records that hold nothing
// (so the record never grows past the keys exchanging right now).
func (h *hostRecord) prune(now time.Time) {
	h.Slots = slices.DeleteFunc(h.Slots, func(s int64) bool { return now.Sub(at(s)) >= slotLife })
	h.Singles = slices.DeleteFunc(h.Singles, func(s int64) bool { return now.Sub(at(s)) >= time.Hour })
	for k, r := range h.Keys {
		if r.BusyTill <= ms(now) && r.Until <= ms(now) && r.Exp <= ms(now) && r.Want <= ms(now) && now.Sub(at(r.Obtained)) >= minExchange {
			delete(h.Keys, k)
		}
	}
	if h.Hold <= ms(now) {
		h.Hold = 0
	}
	if h.Lease <= ms(now) {
		h.Prober, h.Lease = "", 0
	}
}

func (h *hostRecord) keyRec(key string) *keyRecord {
	if h.Keys == nil {
		h.Keys = map[string]*keyRecord{}
	}
	r := h.Keys[key]
	if r == nil {
		r = &keyRecord{}
		h.Keys[key] = r
	}
	return r
}

// freeAt is when at most keep slots are still taken.
func (h *hostRecord) freeAt(keep int) time.Time {
	s := slices.Sorted(slices.Values(h.Slots))
	return at(s[len(s)-keep-1]).Add(slotLife)
}

// next is when the next attempt may go during an outage: the B2 schedule
// until a budget is spent, then B18's single attempts; a refresh of a valid
// token every staleGap (B7); a 5xx Retry-After as the server said, capped.
func (h *hostRecord) next(stale bool, r RetryConfig, staleGap time.Duration) time.Time {
	last := at(h.Last)
	var t time.Time
	switch {
	case stale:
		t = last.Add(staleGap)
	case h.Tries <= r.MaxRetries:
		t = last.Add(r.Delay(h.Tries - 1))
		if h.NotBefore != 0 {
			return at(h.NotBefore) // a Retry-After replaces the computed delay (B4)
		}
	default:
		gap := probeGaps[min(h.Tries-r.MaxRetries-1, len(probeGaps)-1)]
		if gap == probeGaps[len(probeGaps)-1] && h.waiting(last) {
			gap = waitingGap // room in the hour for a last chance
		}
		t = last.Add(gap)
	}
	if h.NotBefore != 0 && at(h.NotBefore).After(t) {
		t = at(h.NotBefore)
	}
	return t
}

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

// outcome is what a flight tells the ledger after an attempt.
type outcome struct {
	err        *Error        // nil: a token ...
	life       time.Duration // ... that lives this long
	released   bool          // nothing was sent (or it was cancelled): only give back what the gate reserved
	counted    bool          // an answer from the Colony itself (2xx, 3xx, 4xx)
	retried    bool          // a retried status or a transient network error
	retryAfter time.Duration // the server's Retry-After, 0 if none
}

// record updates the record with an attempt's outcome. It returns, for a
// retried failure, whether this flight goes on probing (its budget is not
// spent) and when its next attempt may go. It sets o.err.RetryAfter to the
// cool-down of a remembered failure.
func (h *hostRecord) record(n need, o outcome, slot int64, now time.Time, staleGap time.Duration) (goOn bool, next time.Time) {
	h.prune(now)
	if i := slices.Index(h.Slots, slot); slot != 0 && i >= 0 {
		h.Slots = slices.Delete(h.Slots, i, i+1)
	}
	k := h.keyRec(n.key)
	if k.Busy == n.owner {
		k.Busy, k.BusyTill = "", 0
	}
	if h.Prober == n.owner {
		h.Prober, h.Lease = "", 0
	}
	if o.released {
		return false, time.Time{}
	}
	if o.counted {
		if n.limit > 0 {
			h.Slots = append(h.Slots, ms(now))
		}
		h.OK, h.Down, h.Tries, h.Last, h.NotBefore, h.Single, h.Singles = ms(now), 0, 0, 0, 0, false, nil
		if !errorIs(o.err, ErrRateLimited) {
			h.Strikes, h.Hold = 0, 0
		}
	}
	switch {
	case o.err == nil:
		k.Obtained, k.Until, k.Fail, k.Exp, k.Gap, k.Want = ms(now), 0, nil, 0, exchangeGap(o.life).Milliseconds(), 0
	case errorIs(o.err, ErrRateLimited): // B18: held for all, 60 s doubling to 1 h without Retry-After
		h.Strikes++
		hold := o.retryAfter
		if hold <= 0 {
			hold = min(time.Minute<<min(h.Strikes-1, 10), maxRateHold)
		}
		o.err.RetryAfter = hold
		h.Hold, h.Fail = ms(now.Add(hold)), failureOf(o.err, n.red, now)
	case o.retried: // an outage: B2's schedule, then B18's single attempts
		if h.Down == 0 {
			h.Down = ms(now)
		}
		h.Tries++
		h.Last, h.Fail, h.NotBefore = ms(now), failureOf(o.err, n.red, now), 0
		if h.Single {
			h.Singles = append(h.Singles, ms(now))
		}
		h.Single = false
		switch {
		case o.retryAfter > n.retry.maxDelay():
			h.NotBefore = ms(now.Add(min(o.retryAfter, maxServerWait))) // B4, capped by B27
			h.Tries = max(h.Tries, n.retry.MaxRetries+1)
		case o.retryAfter > 0:
			h.NotBefore = ms(now.Add(o.retryAfter))
		}
		next = h.next(n.stale, n.retry, staleGap)
		if goOn = !n.stale && h.Tries <= n.retry.MaxRetries; goOn {
			h.Prober, h.Lease = n.owner, ms(next.Add(leaseTime))
		}
	default: // a bad key, a 2FA failure, any other answer: remembered for the key (B8)
		wait := coolDown + coolDown - jitter(coolDown, n.retry.Jitter)
		k.Until, k.Fail, k.Want = ms(now.Add(wait)), failureOf(o.err, n.red, now), 0
		o.err.RetryAfter = wait
	}
	return goOn, next
}

func errorIs(e *Error, kind error) bool { return e != nil && e.kind == kind }

// roundUp rounds a wait up to a whole millisecond, the records' unit.
func roundUp(d time.Duration) time.Duration {
	return max(0, (d+time.Millisecond-1)/time.Millisecond*time.Millisecond)
}
