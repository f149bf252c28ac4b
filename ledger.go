package colonyauth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Ledger is an optional interface of a Cache. Sources whose caches share a
// Ledger coordinate their use of /auth/token per base URL, as the agents of
// one host (or of one cluster behind one IP address) must: /auth/token
// allows 30 requests an hour per IP address, failed ones included.
// Sharing sources
//
//   - count the answers that come from the Colony itself (2xx and 4xx) per
//     rolling hour and stop at WithHostLimit (default 30), urgent needs
//     first: a source without a token, or whose token has less than two
//     hours left, may use every slot; an early refresh only the first two
//     thirds;
//   - hold together after a 429, until its Retry-After;
//   - have one prober during an outage: one source at a time retries, the
//     others send nothing (failing at once without a token, serving their
//     valid token with one);
//   - make one exchange per key between them, across processes.
//
// Update atomically replaces the small record name (a few hundred bytes)
// with fn(old); old is nil when there is none. fn may be called more than
// once (on contention, say); the result of its last call is stored. If fn
// returns an error nothing is stored and Update returns it. Update must not
// hold anything across a sleep or a network call of its caller: the source
// calls it only around exchanges, never on the cached path.
//
// WithFileCache implements it across processes with a lock file, and
// NewMemoryCache within one process. A Ledger that fails is not fatal: the
// source logs it and acts alone until the Ledger works again.
type Ledger interface {
	Update(name string, fn func(old []byte) ([]byte, error)) error
}

// WithHostLimit sets how many answers from /auth/token (2xx and 4xx) the
// sources sharing a Ledger allow themselves per rolling hour: the Colony's
// limit per IP address, 30 by default. 0 means no limit; a negative n is a
// configuration error. Without a Ledger it has no effect: a source alone
// makes a few exchanges a day.
func WithHostLimit(n int) Option {
	return func(o *options) {
		if n < 0 {
			o.fail("invalid option: WithHostLimit(%d), want 0 (no limit) or more", n)
			return
		}
		o.hostLimit = n
	}
}

// DefaultHostLimit is the Colony's limit on /auth/token per IP address and
// rolling hour, and WithHostLimit's default.
const DefaultHostLimit = 30

// ledgerName is the record of a base URL.
func ledgerName(baseURL string) string {
	sum := sha256.Sum256([]byte("colonyauth-host\x00" + baseURL))
	return "host-" + hex.EncodeToString(sum[:12])
}

// updateRecord runs fn on the record name in l, read as untrusted input
// (decodeRecord). fn runs under recover inside the function given to
// Update, whatever the Ledger: a record that makes it panic is replaced by
// an empty one and fn runs again on that, so a poisoned record costs one
// decision, never a crash or a stuck host (B31). What is worth logging
// comes back as note, to be logged once the Ledger's lock is released
// (B32).
func updateRecord(l Ledger, name string, now time.Time, red redactor, fn func(h *hostRecord)) (note string, err error) {
	err = l.Update(name, func(old []byte) ([]byte, error) {
		h, problem := decodeRecord(old, now, red)
		note = problem
		if perr := safely(func() { fn(&h) }); perr != nil {
			note = "a decision on it failed (" + red.message(perr.Error()) + "); replaced by an empty record"
			h = hostRecord{}
			if perr := safely(func() { fn(&h) }); perr != nil {
				return nil, fmt.Errorf("colonyauth: deciding on an empty ledger record failed: %s", red.message(perr.Error()))
			}
		}
		h.At = ms(now)
		return json.Marshal(&h)
	})
	return note, err
}

// memoryLedger is a Ledger in memory: what NewMemoryCache shares.
type memoryLedger struct {
	mu      sync.Mutex
	records map[string][]byte
}

// Update replaces the record name with fn(old) under the ledger's lock.
func (m *memoryLedger) Update(name string, fn func(old []byte) ([]byte, error)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, err := fn(m.records[name])
	if err != nil {
		return err
	}
	if m.records == nil {
		m.records = map[string][]byte{}
	}
	m.records[name] = data
	return nil
}

// gate asks the ledger whether an attempt may go now.
func (s *TokenSource) gate(n need) (v verdict, err *Error) {
	now, gap := s.clock.Now(), s.staleGap()
	err = s.update(now, func(h *hostRecord) { v = h.gate(n, now, gap) })
	return v, err
}

// note tells the ledger an attempt's outcome; see hostRecord.record.
func (s *TokenSource) note(n need, o outcome, slot int64, now time.Time) (goOn bool, next time.Time) {
	gap := s.staleGap()
	s.update(now, func(h *hostRecord) { goOn, next = h.record(n, o, slot, now, gap) })
	return goOn, next
}

// update runs fn on the source's record in the shared Ledger, or in its
// own when there is none or the shared one fails (or its lock is held too
// long): the source then acts alone for this attempt, says so once at
// Warn with the reason, and Alone reports it until the Ledger works again.
// A Ledger that panics is an error of this call (B24).
func (s *TokenSource) update(now time.Time, fn func(h *hostRecord)) *Error {
	if s.ledger != nil && (s.aloneErr.Load() == nil || now.Sub(at(s.aloneAt.Load())) >= retryShared) {
		var note string
		panicked, err := s.protect("the Ledger", func() (err error) {
			note, err = updateRecord(s.ledger, s.record, now, s.red, fn)
			return err
		})
		if note != "" { // logged now that the Ledger's lock is released (B32)
			s.log.Debug("colonyauth: shared ledger record: "+note, "record", s.record)
		}
		switch {
		case panicked != nil:
			return panicked
		case err == nil:
			if s.aloneErr.Swap(nil) != nil {
				s.log.Warn("colonyauth: the shared cache works again; coordinating with the other sources")
			}
			return nil
		}
		s.aloneAt.Store(ms(now))
		reason := errors.New(s.red.message(err.Error()))
		if s.aloneErr.Swap(&reason) == nil {
			s.log.Warn("colonyauth: cannot coordinate through the shared cache; acting alone until it works (sources acting alone do not share the host's 30 exchanges an hour)",
				"reason", reason.Error())
		}
	}
	if note := s.own.update(now, s.red, fn); note != "" {
		s.log.Debug("colonyauth: ledger record: "+note, "record", s.record)
	}
	return nil
}

// ownRecord is the record of a source acting alone. Only the source writes
// it, so it stays decoded (an exchange costs no JSON), but it is treated as
// a shared one is in every other way: clamped before each decision (a
// clock stepped back since it was written must not stretch its holds), and
// replaced when a decision on it panics (B31).
type ownRecord struct {
	mu sync.Mutex
	h  hostRecord
}

func (o *ownRecord) update(now time.Time, red redactor, fn func(h *hostRecord)) (note string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.h.clamp(now, red)
	if perr := safely(func() { fn(&o.h) }); perr != nil {
		note = "a decision on it failed (" + red.message(perr.Error()) + "); replaced by an empty record"
		o.h = hostRecord{}
		if perr := safely(func() { fn(&o.h) }); perr != nil {
			o.h = hostRecord{}
			note = "deciding on an empty record failed: " + red.message(perr.Error())
		}
	}
	o.h.At = ms(now)
	return note
}

// retryShared is how long a source acts alone after its shared Ledger
// failed before it asks it again: a Ledger that is down (a frozen lock
// holder, a Redis that does not answer) costs a call one timeout, not one
// per Update (B32, B33).
const retryShared = 5 * time.Second

// Alone reports why the source is acting alone instead of coordinating
// with the other sources that share its Cache's Ledger (B19–B23): the
// reason the Ledger last failed (a refused cache directory, a lock held
// too long, Redis down), with what to do. It is nil while the source
// coordinates, and for a source without a Ledger. A source acting alone
// still works, but the host's budget and its one prober are then not
// shared: a fleet of sources acting alone can spend the Colony's limit.
func (s *TokenSource) Alone() error {
	if s.usable() != nil {
		return nil
	}
	if err := s.aloneErr.Load(); err != nil {
		return fmt.Errorf("colonyauth: acting alone: %w", *err)
	}
	return nil
}
