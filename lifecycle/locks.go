package lifecycle

import "sync"

// keyLocks is a mutex per record id. Delete, Import and reconciliation read
// the token and then change it; two of them on the same record at once could
// both see "no certificate yet" and write two. Entries live only while
// held, so the map stays as small as the work in flight.
type keyLocks struct {
	mu sync.Mutex
	m  map[int64]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int
}

// lock locks id and returns the unlock function.
func (l *keyLocks) lock(id int64) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[int64]*keyLock{}
	}
	k := l.m[id]
	if k == nil {
		k = &keyLock{}
		l.m[id] = k
	}
	k.users++
	l.mu.Unlock()

	k.Lock()
	return func() {
		k.Unlock()
		l.mu.Lock()
		if k.users--; k.users == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}
