package hsm

import "testing"

func TestSessionStats(t *testing.T) {
	tok := &Token{sessions: sessionCounter{pool: 3}}
	var done []func()
	for _, want := range []SessionStats{
		{Pool: 3, InUse: 1}, {Pool: 3, InUse: 2}, {Pool: 3, InUse: 3}, {Pool: 3, InUse: 3, Waiting: 1}, {Pool: 3, InUse: 3, Waiting: 2},
	} {
		done = append(done, tok.sessions.enter())
		if got := tok.SessionStats(); got != want {
			t.Errorf("after %d enters: %+v, want %+v", len(done), got, want)
		}
	}
	for _, d := range done {
		d()
	}
	if got := tok.SessionStats(); got != (SessionStats{Pool: 3}) {
		t.Errorf("after all left: %+v", got)
	}
}
