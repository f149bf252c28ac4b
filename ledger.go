package colonyauth

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"sync"
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

// updateRecord runs fn on the decoded record of name in l. A record that
// cannot be decoded is treated as empty, and logged.
func updateRecord(l Ledger, name string, log *slog.Logger, fn func(h *hostRecord)) error {
	return l.Update(name, func(old []byte) ([]byte, error) {
		var h hostRecord
		if len(old) > 0 && json.Unmarshal(old, &h) != nil {
			log.Debug("colonyauth: corrupt ledger record, treated as empty", "record", name)
			h = hostRecord{}
		}
		fn(&h)
		return json.Marshal(&h)
	})
}

// memoryLedger is a Ledger in memory: what NewMemoryCache shares, and what
// a source without a shared Ledger keeps for itself.
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
