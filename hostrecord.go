package colonyauth

// The host record: what the sources sharing a Ledger know of one base
// URL's /auth/token (its hour's budget, a 429 hold, an outage and its
// prober, each key's exchange), and what an attempt's outcome changes in it
// (record), under the Ledger's lock. Whether an attempt may go now (gate)
// is in gate.go.

import (
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
