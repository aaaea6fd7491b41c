package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// States csrd sends. systemd reads them line by line; several may go in one
// datagram, separated by newlines.
const (
	Ready     = "READY=1"
	Reloading = "RELOADING=1"
	Stopping  = "STOPPING=1"
	Watchdog  = "WATCHDOG=1"
)

// Notifier sends notifications to one socket. The zero value (and a Notifier
// from New without $NOTIFY_SOCKET) is disabled: Notify does nothing.
type Notifier struct {
	addr *net.UnixAddr // nil: not run by systemd (or the socket was unusable)
}

// New returns a Notifier for $NOTIFY_SOCKET. It does not unset the variable:
// csrd starts no child processes that could inherit it.
func New() (*Notifier, error) {
	return NewFor(os.Getenv("NOTIFY_SOCKET"))
}

// NewFor returns a Notifier for socket: a filesystem path ("/run/systemd/notify")
// or an abstract socket ("@name"). "" gives a disabled Notifier.
func NewFor(socket string) (*Notifier, error) {
	switch {
	case socket == "":
		return &Notifier{}, nil
	case socket[0] != '/' && socket[0] != '@':
		// systemd only hands out these two forms; anything else (e.g. a
		// relative path, or vsock: which csrd does not speak) is a mistake
		// worth reporting rather than silently ignoring.
		return &Notifier{}, fmt.Errorf("sdnotify: NOTIFY_SOCKET %q is neither an absolute path nor an abstract socket", socket)
	}
	// Go maps a leading '@' to the abstract namespace (a leading NUL byte).
	return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}, nil
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends the given states (e.g. Ready, "STATUS=serving") as one datagram.
// Each call dials anew: the socket is connectionless and systemd may be
// restarted (daemon-reexec) between calls.
func (n *Notifier) Notify(states ...string) error {
	if !n.Enabled() || len(states) == 0 {
		return nil
	}
	for _, s := range states {
		// A newline inside a state would start a second, unintended assignment.
		if s == "" || strings.ContainsRune(s, '\n') {
			return fmt.Errorf("sdnotify: state %q is empty or contains a newline", s)
		}
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	msg := strings.Join(states, "\n")
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sdnotify: send: %w", err)
	}
	return nil
}

// Status formats a STATUS= line (shown by systemctl status), with newlines
// replaced so the value stays one assignment.
func Status(format string, args ...any) string {
	return "STATUS=" + strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
}

// ErrNoWatchdog is returned by WatchdogInterval when systemd asked for no
// watchdog pings (or asked another process for them).
var ErrNoWatchdog = errors.New("sdnotify: watchdog not enabled")

// WatchdogInterval returns how often to send WATCHDOG=1: half of
// $WATCHDOG_USEC, as sd_watchdog_enabled(3) recommends, so one late ping does
// not get the service killed. It returns ErrNoWatchdog when the variable is
// unset or $WATCHDOG_PID names another process.
func WatchdogInterval() (time.Duration, error) {
	return watchdogInterval(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
}

func watchdogInterval(usec, pid string, self int) (time.Duration, error) {
	if usec == "" {
		return 0, ErrNoWatchdog
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil {
			return 0, fmt.Errorf("sdnotify: WATCHDOG_PID %q: %w", pid, err)
		}
		if p != self {
			return 0, ErrNoWatchdog
		}
	}
	us, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || us == 0 {
		return 0, fmt.Errorf("sdnotify: WATCHDOG_USEC %q is not a positive integer", usec)
	}
	return time.Duration(us) * time.Microsecond / 2, nil
}
