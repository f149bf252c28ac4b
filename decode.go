package colonyauth

// The host record is input, not truth (B31): whoever wrote it (a crashed
// process, an older version, a stepped clock, a hostile co-tenant), a
// source reads it field by field, drops what does not parse, and clamps
// every time to what a source could have written now, so that no record
// can make a call hang, panic, or stop the host.

import (
	"encoding/json"
	"fmt"
	"time"
)

// Bounds of what a source could have written (B31).
const (
	maxHold     = 24 * time.Hour // the longest Retry-After obeyed, so the longest 429 hold
	maxStrikes  = 16             // consecutive 429s: the hold stops doubling long before
	maxEntries  = 1000           // slots or single attempts kept: far above any hour's limit
	maxKeys     = 20000          // key entries of one record
	maxIDLength = 64             // a source's owner ID
	clockSlack  = 2 * lockWait   // a record this far "in the future" was written by a clock ahead of ours
)

// decodeRecord reads a host record written by anyone. It never fails: a
// record that is not a JSON object is read as empty, with problem saying
// so; fields and key entries that do not parse (a null, a wrong type, a
// negative count) are dropped; times are clamped (see clamp).
func decodeRecord(data []byte, now time.Time, red redactor) (h hostRecord, problem string) {
	if len(data) == 0 {
		return h, ""
	}
	if h, ok := decodeWhole(data); ok { // the common case: a record a source wrote
		problem := ""
		if h.clamp(now, red) {
			problem = "times out of range were clamped"
		}
		return h, problem
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		return hostRecord{}, "not a JSON object"
	}
	dropped := 0
	field := func(name string, v any) {
		if raw, ok := fields[name]; ok && json.Unmarshal(raw, v) != nil {
			dropped++
		}
	}
	field("at", &h.At)
	field("slots", &h.Slots)
	field("ok", &h.OK)
	field("hold", &h.Hold)
	field("strikes", &h.Strikes)
	field("down", &h.Down)
	field("tries", &h.Tries)
	field("last", &h.Last)
	field("nb", &h.NotBefore)
	field("single", &h.Single)
	field("singles", &h.Singles)
	field("prober", &h.Prober)
	field("lease", &h.Lease)
	field("fail", &h.Fail)
	var keys map[string]json.RawMessage
	field("keys", &keys)
	for name, raw := range keys {
		var k keyRecord
		if json.Unmarshal(raw, &k) != nil || string(raw) == "null" || len(h.Keys) >= maxKeys {
			dropped++
			continue
		}
		if h.Keys == nil {
			h.Keys = map[string]*keyRecord{}
		}
		h.Keys[name] = &k
	}
	if h.clamp(now, red) || dropped > 0 {
		problem = "entries that do not parse or times out of range were dropped or clamped"
	}
	return h, problem
}

// decodeWhole decodes a well-formed record in one pass, and reports false
// for anything else (a wrong type, a null key entry, too many keys), which
// decodeRecord then reads field by field. One pass costs a third of the
// allocations of reading field by field, on every exchange.
func decodeWhole(data []byte) (h hostRecord, ok bool) {
	if i := firstNonSpace(data); i < 0 || data[i] != '{' {
		return hostRecord{}, false
	}
	if json.Unmarshal(data, &h) != nil || len(h.Keys) > maxKeys {
		return hostRecord{}, false
	}
	for _, k := range h.Keys {
		if k == nil {
			return hostRecord{}, false
		}
	}
	return h, true
}

func firstNonSpace(b []byte) int {
	for i, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return i
		}
	}
	return -1
}

// clamp bounds every field of h to what a source could have written at
// now, and reports whether it changed anything. A record written "in the
// future" (a clock stepped back since) is read as if written now: every
// time in it moves back by the difference.
func (h *hostRecord) clamp(now time.Time, red redactor) (changed bool) {
	n := ms(now)
	shift := int64(0)
	if h.At > n+clockSlack.Milliseconds() { // not just a writer that took the lock after us
		shift = h.At - n
	}
	h.At = 0
	// past: a time that must not lie in the future (an answer, an attempt).
	past := func(t *int64) {
		if *t != 0 {
			*t -= shift
		}
		switch {
		case *t < 0:
			*t, changed = 0, true
		case *t > n:
			*t, changed = n, true
		}
	}
	// ahead: a deadline at most d from now.
	ahead := func(t *int64, d time.Duration) {
		if *t != 0 {
			*t -= shift
		}
		switch {
		case *t < 0:
			*t, changed = 0, true
		case *t > n+d.Milliseconds():
			*t, changed = n+d.Milliseconds(), true
		}
	}
	count := func(c *int, most int) {
		if *c < 0 || *c > most {
			*c, changed = max(0, min(*c, most)), true
		}
	}
	// times: a list of past times; a slot reserved now may lie a few
	// milliseconds ahead (one value per slot), so ahead by a second at most.
	times := func(list []int64) []int64 {
		if len(list) > maxEntries {
			list, changed = list[len(list)-maxEntries:], true
		}
		out := list[:0]
		for _, t := range list {
			ahead(&t, time.Second)
			if t > 0 {
				out = append(out, t)
			} else {
				changed = true
			}
		}
		return out
	}
	h.Slots = times(h.Slots)
	h.Singles = times(h.Singles)
	past(&h.OK)
	past(&h.Down)
	past(&h.Last)
	ahead(&h.Hold, maxHold)
	ahead(&h.NotBefore, maxServerWait)
	ahead(&h.Lease, leaseTime)
	count(&h.Strikes, maxStrikes)
	count(&h.Tries, 1<<20)
	if len(h.Prober) > maxIDLength {
		h.Prober, h.Lease, changed = "", 0, true
	}
	changed = h.Fail.clean(red) || changed
	if h.Fail != nil {
		past(&h.Fail.At)
	}
	for name, k := range h.Keys {
		past(&k.Obtained)
		ahead(&k.BusyTill, leaseTime)
		ahead(&k.Until, maxHold)
		ahead(&k.Exp, maxLifetime)
		ahead(&k.Want, maxHold)
		if k.Gap < 0 || k.Gap > minExchange.Milliseconds() {
			k.Gap, changed = 0, true
		}
		if len(k.Busy) > maxIDLength {
			k.Busy, k.BusyTill, changed = "", 0, true
		}
		changed = k.Fail.clean(red) || changed
		if k.Fail != nil {
			past(&k.Fail.At)
		}
		if len(name) > maxIDLength {
			delete(h.Keys, name)
			changed = true
		}
	}
	return changed
}

// clean makes a failure read from a record safe to show: its texts are
// redacted again (by the reader: the writer's key is unknown here, but
// anything shaped like a key or a token goes) and trimmed, its kind one
// that exists. It reports whether it changed anything.
func (f *failure) clean(red redactor) bool {
	if f == nil {
		return false
	}
	before := *f
	f.Message = red.message(f.Message)
	f.Code = red.message(f.Code)
	if len(f.Code) > 64 {
		f.Code = f.Code[:64]
	}
	if _, ok := kinds[f.Kind]; !ok {
		f.Kind = ""
	}
	if f.Status < 0 || f.Status > 999 {
		f.Status = 0
	}
	f.Attempts = max(0, min(f.Attempts, 1000))
	return *f != before
}

// safely runs fn, turning a panic into an error.
func safely(fn func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	fn()
	return nil
}
