package store

import (
	"sync/atomic"
	"time"
)

// Stats are a Store's write counters since it opened: what the database
// costs the requests that write (csrd's metrics csrd_db_*, and the
// benchmark's comparison of the backends).
type Stats struct {
	// Writes are the write transactions callers asked for (each a part of
	// a group commit).
	Writes uint64
	// Commits are the group commits that reached COMMIT successfully.
	Commits uint64
	// WriteWait is the time callers waited for their writes, queueing for
	// the writer included, summed over every write.
	WriteWait time.Duration
}

type stats struct {
	writes, commits, waitNanos atomic.Uint64
}

// Stats returns the write counters.
func (s *Store) Stats() Stats {
	return Stats{Writes: s.stats.writes.Load(), Commits: s.stats.commits.Load(),
		WriteWait: time.Duration(s.stats.waitNanos.Load())}
}

// wrote counts one write that began at start.
func (s *Store) wrote(start time.Time) {
	s.stats.writes.Add(1)
	s.stats.waitNanos.Add(uint64(time.Since(start)))
}
