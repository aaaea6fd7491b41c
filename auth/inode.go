package auth

import (
	"os"
	"syscall"
)

// inode identifies the file behind a path, so an atomic replace (rename) of
// the same size within one mtime tick is still seen as a change.
func inode(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}
