package colonyauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// fileCache is a Cache and Ledger of files in a directory: one JSON file
// per token entry, one per ledger record, and a lock file. The directory
// is created 0700 and files 0600; each file is written to a temporary name
// and renamed, so processes sharing the directory never read half a file.
// The lock is held only around reading and writing a record, never across a
// sleep or a network call.
type fileCache struct {
	dir string
	log *slog.Logger // set by New; nil logs nothing
}

// maxEntry is the largest file the cache reads.
const maxEntry = 64 << 10

type cacheEntry struct {
	AccessToken string    `json:"access_token"`
	Expiry      time.Time `json:"expiry"`
}

func (c fileCache) path(name, ext string) string { return filepath.Join(c.dir, name+ext) }

// trusted checks that the directory is ours alone: a directory another
// user can write to could hand us their token (B25). With create it makes
// a missing directory.
func (c fileCache) trusted(create bool) error {
	fi, err := os.Lstat(c.dir)
	if errors.Is(err, fs.ErrNotExist) && create {
		if err = os.MkdirAll(c.dir, 0o700); err == nil {
			fi, err = os.Lstat(c.dir)
		}
	}
	switch {
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("colonyauth: refusing cache directory %s: not a directory", c.dir)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("colonyauth: refusing cache directory %s: it is group- or world-writable (mode %v): run chmod 700 %s", c.dir, fi.Mode().Perm(), c.dir)
	case ownedByOther(fi):
		return fmt.Errorf("colonyauth: refusing cache directory %s: it belongs to another user: use a directory of your own (WithFileCache) or chown it", c.dir)
	}
	return nil
}

// read returns a file of the directory: only a regular file (no FIFO,
// device or symlink) of at most 64 KiB; nil when there is none.
func (c fileCache) read(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxEntry {
		return nil, fmt.Errorf("colonyauth: ignoring %s: not a regular file of at most 64 KiB", filepath.Base(path))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// A writer may have renamed a new file into place since Lstat: check
	// what was opened too.
	if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("colonyauth: ignoring %s: not a regular file", filepath.Base(path))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxEntry+1))
	if err == nil && len(data) > maxEntry {
		err = fmt.Errorf("colonyauth: ignoring %s: larger than 64 KiB", filepath.Base(path))
	}
	return data, err
}

// write replaces path with data atomically.
func (c fileCache) write(path string, data []byte) error {
	f, err := os.CreateTemp(c.dir, ".tmp-*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// Load returns the token stored under key, or (nil, nil) if there is none.
func (c fileCache) Load(key string) (*oauth2.Token, error) {
	if err := c.trusted(false); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	data, err := c.read(c.path(key, ".json"))
	if data == nil || err != nil {
		return nil, err
	}
	return parseCacheEntry(data)
}

// parseCacheEntry reads a token entry; the source checks the token itself.
func parseCacheEntry(data []byte) (*oauth2.Token, error) {
	var e cacheEntry
	if err := json.Unmarshal(data, &e); err != nil || e.AccessToken == "" || e.Expiry.IsZero() {
		return nil, errors.New("colonyauth: corrupt cache entry")
	}
	return &oauth2.Token{AccessToken: e.AccessToken, TokenType: "Bearer", Expiry: e.Expiry}, nil
}

// Store writes tok under key atomically.
func (c fileCache) Store(key string, tok *oauth2.Token) error {
	if err := c.trusted(true); err != nil {
		return err
	}
	data, err := json.Marshal(cacheEntry{AccessToken: tok.AccessToken, Expiry: tok.Expiry})
	if err != nil {
		return err
	}
	return c.write(c.path(key, ".json"), data)
}

// Delete removes the entry under key; a missing entry is not an error.
func (c fileCache) Delete(key string) error {
	if err := c.trusted(false); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	err := os.Remove(c.path(key, ".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Update implements Ledger across processes: under the directory's lock
// file it reads the record name, calls fn and writes its result.
func (c fileCache) Update(name string, fn func(old []byte) ([]byte, error)) error {
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return fmt.Errorf("colonyauth: invalid ledger record name %q", name)
	}
	if err := c.trusted(true); err != nil {
		return err
	}
	start := time.Now()
	release, ok := takeTurn(c.dir, lockWait)
	if !ok {
		return lockTimeout(c.dir, lockWait)
	}
	defer release()
	unlock, err := lockFile(filepath.Join(c.dir, ".lock"), max(lockWait-time.Since(start), 0))
	if err != nil {
		return err
	}
	path := c.path(name, ".ledger")
	var readErr error
	err = func() error {
		defer unlock()
		var old []byte
		old, readErr = c.read(path)
		data, err := fn(old)
		if err != nil {
			return err
		}
		return c.write(path, data)
	}()
	if readErr != nil && c.log != nil { // logged with the lock released (B32)
		c.log.Debug("colonyauth: ledger record unreadable, treated as empty", "error", readErr)
	}
	return err
}

// turns queues the goroutines of this process for a directory's lock file:
// they take turns, first come first served, instead of polling flock
// against each other (under load a poller can miss its turn for longer
// than lockWait, and then act alone). The wait for a turn and for the file
// lock share one lockWait. Each waiter makes its own channel, so nothing
// outlives a wait (a testing/synctest bubble never meets another's).
var turns sync.Map // directory → *turnQueue

type turnQueue struct {
	mu      sync.Mutex
	busy    bool
	waiters []chan struct{}
}

// takeTurn waits at most wait for this process's turn at dir's lock.
func takeTurn(dir string, wait time.Duration) (release func(), ok bool) {
	v, _ := turns.LoadOrStore(dir, new(turnQueue))
	q := v.(*turnQueue)
	q.mu.Lock()
	if !q.busy {
		q.busy = true
		q.mu.Unlock()
		return q.release, true
	}
	turn := make(chan struct{})
	q.waiters = append(q.waiters, turn)
	q.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-turn:
		return q.release, true
	case <-t.C:
	}
	q.mu.Lock()
	if i := slices.Index(q.waiters, turn); i >= 0 {
		q.waiters = slices.Delete(q.waiters, i, i+1)
		q.mu.Unlock()
		return nil, false
	}
	q.mu.Unlock()
	q.release() // the turn came as the wait ended: pass it on
	return nil, false
}

// release hands the turn to the first waiter, if any.
func (q *turnQueue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiters) == 0 {
		q.busy = false
		return
	}
	next := q.waiters[0]
	q.waiters = q.waiters[1:]
	close(next)
}

// lockWait is the longest a source waits for the directory's lock (B32):
// then it acts alone for that attempt.
const lockWait = time.Second

// lockTimeout is the error of a lock that another process held too long.
func lockTimeout(dir string, wait time.Duration) error {
	return fmt.Errorf("colonyauth: the lock of cache directory %s was held by another process for more than %v (a stopped or frozen process?); acting alone for this attempt", dir, wait)
}
