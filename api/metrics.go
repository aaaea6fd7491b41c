package api

import "github.com/labstack/echo/v4"

// api records every request (observe), PKCS#11 error answered (noteError),
// refused authentication and failed audit write into the process's metrics
// (metrics.Metrics, Options.Metrics), and serves them at /metrics.

// routeLabel names the matched route as registered (canonical spelling,
// path parameters as :id) so label values stay few; anything unmatched is
// "unmatched" and odd methods are "other".
func (s *Server) routeLabel(c echo.Context) (method, route string) {
	method = c.Request().Method
	switch method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
	default:
		method = "other"
	}
	if r, ok := s.canonical[c.Path()]; ok {
		return method, r
	}
	return method, "unmatched"
}
