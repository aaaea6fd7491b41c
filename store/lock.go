package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrInUse: a restore found the database open in another Store (a running
// csrd, or a csrctl command), or Open found a restore under way.
var ErrInUse = errors.New("store: database in use")

// Every Store holds a shared flock(2) on its database file for as long as
// it is open; Restore takes it exclusively. That is how a restore knows
// csrd is stopped: SQLite's own locks cannot tell an idle open connection
// from a closed one (in WAL mode a reader holds no lock between
// transactions), an flock is held by the open descriptor whatever the
// connection does, and the kernel drops it when the process dies, kill -9
// included.
//
// flock locks are independent of the POSIX record locks SQLite takes
// (Linux keeps the two apart), but closing any descriptor of a file drops
// every POSIX lock this process holds on it: the lock file is therefore
// closed only after every SQLite connection of the Store is.
type fileLock struct{ f *os.File }

// lockFile takes the flock on path, shared or exclusive, without waiting.
func lockFile(path string, exclusive bool) (*fileLock, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("store: lock database: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if exclusive {
				return nil, fmt.Errorf("%w: %s is open in a running csrd or csrctl; stop csrd (systemctl stop csrd) and try again", ErrInUse, path)
			}
			return nil, fmt.Errorf("%w: %s is being restored (csrctl restore); try again when it has finished", ErrInUse, path)
		}
		return nil, fmt.Errorf("store: lock database: %w", err)
	}
	return &fileLock{f: f}, nil
}

// Close releases the lock. Call it after the SQLite connections on the
// file are closed (see above).
func (l *fileLock) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
