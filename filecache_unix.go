//go:build unix

package colonyauth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
func lockFile(path string, wait time.Duration) (unlock func(), err error) {
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CREAT|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("colonyauth: cannot open the cache directory's lock file %s: %w", path, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		syscall.Close(fd)
		return nil, fmt.Errorf("colonyauth: refusing the lock file %s: not a regular file (remove it)", path)
	}
	deadline := time.Now().Add(wait)
	for delay := time.Millisecond; ; delay = min(2*delay, 10*time.Millisecond) {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(fd, syscall.LOCK_UN)
				syscall.Close(fd)
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			syscall.Close(fd)
			return nil, fmt.Errorf("colonyauth: cannot lock %s: %w", path, err)
		}
		if !time.Now().Before(deadline) {
			syscall.Close(fd)
			return nil, lockTimeout(filepath.Dir(path), wait)
		}
		time.Sleep(delay)
	}
}
