// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)) without libsystemd: it sends state strings such as READY=1,
// STOPPING=1, STATUS=... and WATCHDOG=1 as datagrams to the unix socket named
// by $NOTIFY_SOCKET, which may be a path or an abstract socket written with a
// leading '@'. It also reads the watchdog interval systemd announces in
// $WATCHDOG_USEC (and $WATCHDOG_PID).
//
// Outside systemd (no $NOTIFY_SOCKET) every call is a no-op, so the daemon runs
// the same way from a shell, a test or a unit with Type=notify.
package sdnotify
