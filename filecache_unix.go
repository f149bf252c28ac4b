//go:build unix

package colonyauth

import (
	"io/fs"
	"os"
	"syscall"
)

// ownedByOther reports whether fi belongs to another user than this
// process's.
func ownedByOther(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) != os.Getuid()
}
