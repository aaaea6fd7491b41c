// Package api serves csrd's Keyfactor-compatible REST surface with echo v4:
// the routes under the configured base path, the Keyfactor request and
// response types with their Validate methods, request logging, and the one
// HTTP error mapper that turns every domain error into a status code, a
// stable csrd ErrorCode and a message that is safe to show a client.
//
// Handlers hold no business rules and never talk to PKCS#11: they decode,
// validate the shape of a request and hand it to the use cases, which api
// reaches through the small interfaces it declares (Generator, ...).
//
// Keyfactor Command runs on ASP.NET, whose routing and JSON binding are
// case-insensitive; existing clients rely on that (older SDKs send camelCase
// names, installations spell the base path /KeyfactorApi), so csrd matches
// paths and field names case-insensitively too.
package api
