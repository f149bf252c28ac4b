//go:build unix

package colonyauth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ownedByOther reports whether fi belongs to another user than this
// process's.
func ownedByOther(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) != os.Getuid()
}

// lockFile takes an exclusive lock on the file at path (created 0600),
// waiting at most wait for another holder (B32): a holder that is frozen
// (SIGSTOP, a debugger, a paused container) costs a caller that long, not
// forever. The file is opened without following a symlink and without
// blocking, and refused unless it is a regular file, so a FIFO or device
// planted there cannot hang the open. unlock releases it.
//
// The wait is a blocking flock(2) in a helper goroutine, so that the
// kernel hands the lock to the waiting processes as it frees (a poller
// can miss its turn for longer than wait when many processes want the
// lock). A caller that gives up leaves the attempt to the next caller of
// this process, or, if none comes, to be released as soon as it succeeds:
// a frozen holder costs one waiting goroutine per directory, not one per
// call.
func lockFile(path string, wait time.Duration) (unlock func(), err error) {
	locking.Lock()
	a := attempts[path]
	if a == nil {
		fd, err := openLockFile(path)
		if err != nil {
			locking.Unlock()
			return nil, err
		}
		if err := flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err == nil { // free: no goroutine needed
			locking.Unlock()
			return func() {
				syscall.Flock(fd, syscall.LOCK_UN)
				syscall.Close(fd)
			}, nil
		} else if !errors.Is(err, syscall.EWOULDBLOCK) {
			syscall.Close(fd)
			locking.Unlock()
			return nil, fmt.Errorf("colonyauth: cannot lock %s: %w", path, err)
		} else if wait <= 0 {
			syscall.Close(fd)
			locking.Unlock()
			return nil, lockTimeout(filepath.Dir(path), wait)
		}
		a = &lockAttempt{fd: fd, done: make(chan struct{})}
		attempts[path] = a
		go a.run(path)
	}
	a.abandoned = false // adopted by this caller
	locking.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-a.done:
	case <-t.C:
	}
	locking.Lock()
	defer locking.Unlock()
	select {
	case <-a.done: // it succeeded (or failed), even as the wait ended: this caller takes it
		delete(attempts, path)
		if a.err != nil {
			syscall.Close(a.fd)
			return nil, fmt.Errorf("colonyauth: cannot lock %s: %w", path, a.err)
		}
		return func() {
			syscall.Flock(a.fd, syscall.LOCK_UN)
			syscall.Close(a.fd)
		}, nil
	default:
		a.abandoned = true
		return nil, lockTimeout(filepath.Dir(path), wait)
	}
}

// A lockAttempt is one blocking flock(2) on a lock file, which outlives the
// caller that started it when that caller gives up.
type lockAttempt struct {
	fd        int
	err       error
	done      chan struct{} // closed when flock returned
	abandoned bool          // no caller waits for it: release it when it succeeds
}

var (
	locking  sync.Mutex
	attempts = map[string]*lockAttempt{} // the attempt under way per lock file
)

func (a *lockAttempt) run(path string) {
	err := flock(a.fd, syscall.LOCK_EX)
	locking.Lock()
	defer locking.Unlock()
	a.err = err
	close(a.done)
	if a.abandoned { // nobody took it: free the lock at once
		delete(attempts, path)
		syscall.Flock(a.fd, syscall.LOCK_UN)
		syscall.Close(a.fd)
	}
}

// flock is flock(2), retried when a signal interrupts it.
func flock(fd, how int) error {
	for {
		if err := syscall.Flock(fd, how); !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// openLockFile opens (creating) the lock file without following a symlink
// and without blocking, and refuses anything but a regular file.
func openLockFile(path string) (int, error) {
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CREAT|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return -1, fmt.Errorf("colonyauth: cannot open the cache directory's lock file %s: %w", path, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		syscall.Close(fd)
		return -1, fmt.Errorf("colonyauth: refusing the lock file %s: not a regular file (remove it)", path)
	}
	return fd, nil
}
