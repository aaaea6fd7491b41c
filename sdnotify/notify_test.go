package sdnotify

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// listen opens a unixgram socket the way systemd's manager does and returns
// its name as NOTIFY_SOCKET would carry it.
func listen(t *testing.T, abstract bool) (*net.UnixConn, string) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	if abstract {
		var b [8]byte
		_, _ = rand.Read(b[:])
		name = "@csrd-sdnotify-test-" + hex.EncodeToString(b[:])
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, name
}

func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotify(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run("abstract="+strconv.FormatBool(abstract), func(t *testing.T) {
			conn, name := listen(t, abstract)
			t.Setenv("NOTIFY_SOCKET", name)
			n, err := New()
			if err != nil {
				t.Fatal(err)
			}
			if !n.Enabled() {
				t.Fatal("Notifier disabled with NOTIFY_SOCKET set")
			}
			if err := n.Notify(Ready, Status("serving on %s", "127.0.0.1:8443")); err != nil {
				t.Fatal(err)
			}
			if got, want := recv(t, conn), "READY=1\nSTATUS=serving on 127.0.0.1:8443"; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
			for _, s := range []string{Watchdog, Stopping} {
				if err := n.Notify(s); err != nil {
					t.Fatal(err)
				}
				if got := recv(t, conn); got != s {
					t.Errorf("got %q, want %q", got, s)
				}
			}
		})
	}
}

func TestNotifyRefusesNewlines(t *testing.T) {
	conn, name := listen(t, false)
	n, err := NewFor(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify("STATUS=a\nREADY=1"); err == nil {
		t.Error("a state with an embedded newline was sent")
	}
	if err := n.Notify(""); err == nil {
		t.Error("an empty state was sent")
	}
	if got := Status("line1\nline2"); got != "STATUS=line1 line2" {
		t.Errorf("Status = %q", got)
	}
	// Nothing reached the socket.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, err := conn.Read(make([]byte, 64)); err == nil {
		t.Error("a refused state reached the socket")
	}
}

func TestDisabledAndBadSockets(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := New()
	if err != nil || n.Enabled() {
		t.Fatalf("New without NOTIFY_SOCKET: enabled=%v err=%v", n.Enabled(), err)
	}
	if err := n.Notify(Ready); err != nil {
		t.Errorf("disabled Notify: %v", err)
	}
	var zero *Notifier
	if err := zero.Notify(Ready); err != nil {
		t.Errorf("nil Notify: %v", err)
	}
	if _, err := NewFor("relative/notify"); err == nil {
		t.Error("relative NOTIFY_SOCKET accepted")
	}
	// A socket nobody listens on is an error the caller can log.
	gone, err := NewFor(filepath.Join(t.TempDir(), "nobody"))
	if err != nil {
		t.Fatal(err)
	}
	if err := gone.Notify(Ready); err == nil {
		t.Error("Notify to a missing socket succeeded")
	}
}

func TestWatchdogInterval(t *testing.T) {
	const self = 4242
	tests := []struct {
		name, usec, pid string
		want            time.Duration
		wantErr         error // nil: no error; errAny: some error
	}{
		{"unset", "", "", 0, ErrNoWatchdog},
		{"30s", "30000000", "", 15 * time.Second, nil},
		{"for us", "2000000", "4242", time.Second, nil},
		{"for another process", "2000000", "1", 0, ErrNoWatchdog},
		{"garbage", "soon", "", 0, errAny},
		{"zero", "0", "", 0, errAny},
		{"bad pid", "2000000", "x", 0, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := watchdogInterval(tt.usec, tt.pid, self)
			switch {
			case tt.wantErr == nil:
				if err != nil {
					t.Fatalf("error %v", err)
				}
			case errors.Is(tt.wantErr, errAny):
				if err == nil {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
			case !errors.Is(err, tt.wantErr):
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("interval %v, want %v", got, tt.want)
			}
		})
	}
}

var errAny = errors.New("any error")
