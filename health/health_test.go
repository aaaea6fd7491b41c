package health

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestChecker(t *testing.T) {
	errDown := errors.New("down")
	block := make(chan struct{})
	defer close(block)
	tests := []struct {
		name      string
		checks    []Check
		wantReady bool
		wantOK    map[string]bool
	}{
		{"all pass", []Check{ok("hsm"), ok("database")}, true, map[string]bool{"hsm": true, "database": true}},
		{"one fails", []Check{ok("hsm"), failing("database", errDown)}, false, map[string]bool{"hsm": true, "database": false}},
		{"one hangs", []Check{ok("hsm"), {Name: "database", Func: func(context.Context) error { <-block; return nil }}},
			false, map[string]bool{"hsm": true, "database": false}},
		{"no checks", nil, true, map[string]bool{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := New(100*time.Millisecond, 0, tt.checks...).Check(context.Background())
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Check took %v", d)
			}
			if r.Ready != tt.wantReady {
				t.Errorf("Ready = %v", r.Ready)
			}
			for name, want := range tt.wantOK {
				if r.Checks[name] != want {
					t.Errorf("%s = %v, want %v", name, r.Checks[name], want)
				}
				if _, hasErr := r.Errors[name]; hasErr == want {
					t.Errorf("%s: error %v with ok=%v", name, r.Errors[name], want)
				}
			}
			if len(r.Checks) != len(tt.wantOK) {
				t.Errorf("checks %v", r.Checks)
			}
		})
	}
}

func TestCheckerCache(t *testing.T) {
	var runs atomic.Int32
	c := New(time.Second, time.Minute, Check{Name: "x", Func: func(context.Context) error { runs.Add(1); return nil }})
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	c.Check(context.Background())
	c.Check(context.Background())
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d runs within maxAge, want 1", n)
	}
	now = now.Add(2 * time.Minute)
	c.Check(context.Background())
	if n := runs.Load(); n != 2 {
		t.Fatalf("%d runs after maxAge, want 2", n)
	}
}

func ok(name string) Check {
	return Check{Name: name, Func: func(context.Context) error { return nil }}
}

func failing(name string, err error) Check {
	return Check{Name: name, Func: func(context.Context) error { return err }}
}
