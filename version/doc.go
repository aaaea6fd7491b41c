// Package version says which build of csrd is running: the main module's
// version and the VCS revision that the go command stamps into a binary it
// builds from a checkout (runtime/debug.ReadBuildInfo). `csrd -version` and
// `csrctl version` print the same line, so a bug report names its build
// without any -ldflags at build time.
package version
