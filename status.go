package colonyauth

import (
	"errors"
	"io/fs"
	"os"
	"time"
)

// HostStatus is what the host record of one base URL says: what an
// operator asks first when agents fail (B41). ReadHostStatus fills it;
// colonytoken status prints it, and the host broker serves it as JSON on
// GET /-/status. Its JSON names are stable. It holds no secret: keys are
// counted, never named.
type HostStatus struct {
	BaseURL string `json:"base_url"`

	// Answers are the answers of /auth/token counted in the rolling hour
	// (2xx and 4xx, reservations included), against Limit; when they reach
	// it, NextSlot is when the oldest leaves the hour.
	Answers  int       `json:"answers_last_hour"`
	Limit    int       `json:"limit"`
	NextSlot time.Time `json:"next_slot,omitzero"`

	// HoldUntil is set while a 429 holds every sharing source.
	HoldUntil time.Time `json:"hold_until,omitzero"`

	// An outage: failing since OutageSince, Tries failed attempts, the next
	// attempt due at NextProbe, made by Prober (a source's random ID) if
	// one holds the lease.
	OutageSince time.Time `json:"outage_since,omitzero"`
	Tries       int       `json:"tries,omitempty"`
	NextProbe   time.Time `json:"next_probe,omitzero"`
	Prober      string    `json:"prober,omitempty"`

	// LastFailure is the last failure's message, redacted by its writer.
	LastFailure string `json:"last_failure,omitempty"`

	// Keys is the number of keys with a live entry in the record.
	Keys int `json:"keys"`

	// Coordinating reports whether the record could be read under the
	// Ledger's lock (the directory trusted, the lock taken); Problem says
	// why not.
	Coordinating bool   `json:"coordinating"`
	Problem      string `json:"problem,omitempty"`
}

// errReadOnly ends a Ledger Update that only reads: nothing is written.
var errReadOnly = errors.New("colonyauth: read only")

// ReadHostStatus reads the host record of baseURL in c's Ledger at now,
// without changing it and without sending anything. limit is the host's
// WithHostLimit (DefaultHostLimit for the default). A Cache without a
// Ledger has no record: the status says so. A Ledger that cannot be used
// (a refused directory, a lock held too long) is reported in Problem, not
// as an error.
func ReadHostStatus(c Cache, baseURL string, limit int, now time.Time) HostStatus {
	st := HostStatus{BaseURL: baseURL, Limit: limit}
	l, ok := c.(Ledger)
	if !ok {
		st.Problem = "the cache has no Ledger: its sources do not coordinate"
		return st
	}
	if fc, ok := c.(fileCache); ok {
		if _, err := os.Lstat(fc.dir); errors.Is(err, fs.ErrNotExist) { // reading makes nothing
			st.Problem = "the cache directory " + fc.dir + " does not exist yet: no source has used it"
			return st
		}
	}
	var h hostRecord
	err := safely(func() {
		err := l.Update(ledgerName(trimSlash(baseURL)), func(old []byte) ([]byte, error) {
			h, _ = decodeRecord(old, now, redactor{})
			return nil, errReadOnly
		})
		if err != nil && !errors.Is(err, errReadOnly) {
			st.Problem = redactor{}.message(err.Error())
		}
	})
	if err != nil {
		st.Problem = err.Error()
	}
	st.Coordinating = st.Problem == ""
	h.prune(now)
	st.Answers = len(h.Slots)
	if limit > 0 && st.Answers >= limit {
		st.NextSlot = h.freeAt(limit - 1)
	}
	if h.Hold > ms(now) {
		st.HoldUntil = at(h.Hold)
	}
	if h.Down != 0 {
		st.OutageSince, st.Tries = at(h.Down), h.Tries
		st.NextProbe = h.next(false, DefaultRetry(), staleInterval)
		if h.Lease > ms(now) {
			st.Prober = h.Prober
		}
	}
	if h.Fail != nil {
		st.LastFailure = h.Fail.Message
	}
	st.Keys = len(h.Keys)
	return st
}

// trimSlash is the base URL as sources name their record.
func trimSlash(u string) string {
	for len(u) > 0 && u[len(u)-1] == '/' {
		u = u[:len(u)-1]
	}
	return u
}
