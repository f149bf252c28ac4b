//go:build !unix

package colonyauth

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
)

// ownedByOther cannot tell owners apart here; the mode check still applies.
func ownedByOther(fs.FileInfo) bool { return false }

// lockFile takes an exclusive lock on the file at path, waiting at most
// wait for another holder (B32).
func lockFile(path string, wait time.Duration) (unlock func(), err error) {
	l := flock.New(path, flock.SetPermissions(0o600))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ok, err := l.TryLockContext(ctx, 10*time.Millisecond)
	switch {
	case ok:
		return func() { l.Unlock() }, nil
	case err != nil && ctx.Err() == nil:
		return nil, fmt.Errorf("colonyauth: cannot lock %s: %w", path, err)
	}
	return nil, lockTimeout(filepath.Dir(path), wait)
}
