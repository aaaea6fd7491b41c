package auth

import (
	"os"
	"syscall"
)

// keepOwner gives f the owner and group of st's file when they differ from
// what f got (only root may change them; for anyone else they are already
// their own).
func keepOwner(f *os.File, st os.FileInfo) error {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	cur, err := f.Stat()
	if err != nil {
		return err
	}
	if c, ok := cur.Sys().(*syscall.Stat_t); ok && c.Uid == s.Uid && c.Gid == s.Gid {
		return nil
	}
	return f.Chown(int(s.Uid), int(s.Gid))
}

// inode identifies the file behind a path, so an atomic replace (rename) of
// the same size within one mtime tick is still seen as a change.
func inode(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}
