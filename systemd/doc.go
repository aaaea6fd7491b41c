// Package systemd holds no Go code: it is where csrd's systemd integration
// lives — csrd.service (Type=notify, watchdog, credentials, hardening) and
// csrd.sysusers — and its tests install them with `make install` into a
// temporary DESTDIR, run `systemd-analyze verify` on the installed unit,
// measure `systemd-analyze security` and check the sysusers file with
// systemd-sysusers. The daemon side of the protocol is package sdnotify and
// cmd/csrd.
package systemd
