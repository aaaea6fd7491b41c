package policy

import "sync/atomic"

// Reloader holds the Engine in force and swaps it atomically: a request
// is decided entirely by the Engine it started with, and a reload never
// leaves a half-built policy visible. It is what csrd hands to the use
// cases and the pattern endpoints.
type Reloader struct {
	cur atomic.Pointer[Engine]
}

// NewReloader starts with e in force.
func NewReloader(e *Engine) *Reloader {
	r := &Reloader{}
	r.cur.Store(e)
	return r
}

// Current returns the Engine in force.
func (r *Reloader) Current() *Engine { return r.cur.Load() }

// Decide decides req with the Engine in force.
func (r *Reloader) Decide(req Request) (*Decision, error) { return r.Current().Decide(req) }

// Reload builds a new Engine with load and puts it in force. If load fails
// the Engine in force stays and the error is returned: a broken file must
// never leave csrd without a policy, nor with a weaker one.
func (r *Reloader) Reload(load func() (*Engine, error)) (*Engine, error) {
	e, err := load()
	if err != nil {
		return r.Current(), err
	}
	r.cur.Store(e)
	return e, nil
}
