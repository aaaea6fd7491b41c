package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/metrics"
	"github.com/csrd/csrd/policy"
)

// Options configures a Server.
type Options struct {
	// BasePath is Keyfactor's API root, "/KeyfactorAPI" by default; it is
	// matched case-insensitively and used as written in Location headers.
	BasePath  string
	Log       zerolog.Logger
	Generator Generator
	// Policy serves the EnrollmentPatterns endpoints; nil means the
	// built-in default policy.
	Policy PolicySource
	// Pending, Certificates and Keys serve the key lifecycle endpoints;
	// each group is registered only when set.
	Pending      PendingCSRs
	Certificates Certificates
	Keys         KeyDirectory
	// Enrollment serves Enrollment/CSR and KeyLife the retire and renew
	// endpoints of csrd's key API; each is registered only when set.
	Enrollment Enroller
	KeyLife    KeyLife
	// Readiness answers /readyz; nil means always ready.
	Readiness Readiness
	// TokenStates, when set, adds each HSM token's state (label → fixed
	// phrase, "ok" when in use) to /readyz.
	TokenStates func() map[string]string
	// MaxGenerations bounds key generations in flight (0: no bound); a
	// request that finds none free within GenerationWait gets a 503.
	MaxGenerations int
	GenerationWait time.Duration
	// MaxGenerationsPerIdentity bounds the generations one identity has
	// in flight or waiting (0: no bound); one more is answered 429 at once.
	MaxGenerationsPerIdentity int

	// Auth checks credentials and throttles sources that guess (auth.go).
	// NoAuth disables authentication (config auth.mode none, loopback
	// only); with neither, every call is refused.
	Auth   Authenticator
	NoAuth bool
	// TrustedProxies may set X-Forwarded-For (see clientIP); empty: the
	// TCP peer is the client.
	TrustedProxies []*net.IPNet
	Audit          AuditLog         // nil: nothing audited
	Metrics        *metrics.Metrics // nil: a registry with only the request metrics
	// Fleet, when set, serves GET /csrd/v1/nodes and forwards operations
	// on keys in tokens this node does not reach (fleet.go).
	Fleet Fleet
}

// Server is csrd's HTTP handler.
type Server struct {
	e           *echo.Echo
	basePath    string
	log         zerolog.Logger
	gen         Generator
	policy      PolicySource
	pending     PendingCSRs
	certs       Certificates
	keys        KeyDirectory
	fleet       Fleet
	enroller    Enroller
	life        KeyLife
	ready       Readiness
	tokenStates func() map[string]string
	genLimit    *limiter
	// endpoints lists "METHOD /path" (relative to the base path) for
	// Status/Endpoints, built from the routes actually registered.
	endpoints []string

	auth    Authenticator
	noAuth  bool
	audit   AuditLog
	metrics *metrics.Metrics
	// canonical maps a registered (lower-case) echo path to its spelling
	// in metrics labels.
	canonical map[string]string
}

// New builds the echo instance with every route and middleware.
func New(o Options) *Server {
	s := &Server{
		e:           echo.New(),
		basePath:    strings.TrimRight(o.BasePath, "/"),
		log:         o.Log,
		gen:         o.Generator,
		policy:      o.Policy,
		pending:     o.Pending,
		certs:       o.Certificates,
		keys:        o.Keys,
		fleet:       o.Fleet,
		enroller:    o.Enrollment,
		life:        o.KeyLife,
		ready:       o.Readiness,
		tokenStates: o.TokenStates,
		genLimit:    newLimiter(o.MaxGenerations, o.MaxGenerationsPerIdentity, o.GenerationWait),
		auth:        o.Auth,
		noAuth:      o.NoAuth,
		audit:       o.Audit,
		metrics:     o.Metrics,

		canonical: map[string]string{},
	}
	if s.policy == nil {
		s.policy = policy.NewReloader(policy.Default())
	}
	if s.metrics == nil {
		s.metrics = metrics.New(metrics.Sources{})
	}
	if l := s.genLimit; l != nil {
		s.metrics.WatchGenerations(func() float64 { return float64(l.InFlight()) }, func() float64 { return float64(l.Waiting()) })
	}
	e := s.e
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(s.log)
	// The peer address, or X-Forwarded-For only as far as trusted proxies
	// wrote it: throttling and the audit log must not be steerable by a
	// header the client writes.
	e.IPExtractor = clientIP(o.TrustedProxies)
	e.Pre(s.requestID, s.foldPath)
	e.Use(s.observe, s.accessLog, recoverPanics(s.log), s.noteError)

	s.route(http.MethodPost, "/CSRGeneration/Generate", s.generate)
	s.route(http.MethodGet, "/Status/Endpoints", s.statusEndpoints)
	s.route(http.MethodGet, "/Status/HealthCheck", s.statusHealthCheck)
	s.route(http.MethodGet, "/EnrollmentPatterns", s.listPatterns)
	s.route(http.MethodGet, "/EnrollmentPatterns/Settings", s.patternSettings)
	s.route(http.MethodGet, "/EnrollmentPatterns/:id", s.getPattern)
	if s.pending != nil {
		s.pendingRoutes()
	}
	if s.certs != nil {
		s.certificateRoutes()
	}
	if s.keys != nil {
		s.keyRoutes()
	}
	if s.fleet != nil {
		s.fleetRoutes()
	}
	if s.enroller != nil {
		s.enrollmentRoutes()
	}
	if s.life != nil && s.keys != nil {
		s.keyLifeRoutes()
	}
	s.routeHealth()
	s.plainRoute(http.MethodGet, "/metrics", echo.WrapHandler(s.metrics.Handler()), s.authenticate(auth.OpMetrics))
	s.plainRoute(http.MethodGet, s.basePath+"/openapi.json", s.serveOpenAPI)
	return s
}

// plainRoute registers a route outside Keyfactor's API rules (no Keyfactor
// headers, not in Status/Endpoints): metrics, health, the API description.
func (s *Server) plainRoute(method, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
	p := strings.ToLower(path)
	s.e.Add(method, p, h, m...)
	s.canonical[p] = path
}

// GenerationsInFlight returns how many key generations hold a slot and how
// many wait for one (0, 0 without a bound).
func (s *Server) GenerationsInFlight() (inFlight int, waiting int64) {
	if s.genLimit == nil {
		return 0, 0
	}
	return s.genLimit.InFlight(), s.genLimit.Waiting()
}

// ServeHTTP makes Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.e.ServeHTTP(w, r) }

// route registers a Keyfactor API handler under the base path, lower-cased
// (see foldPath), with Keyfactor's header checks, and remembers the
// canonical spelling for Status/Endpoints. The checks are per route, not a
// group middleware, so that an unknown path is a 404 and a wrong method a
// 405 whatever the headers say.
func (s *Server) route(method, path string, h echo.HandlerFunc, mw ...echo.MiddlewareFunc) {
	op, _ := routeOperation(method, path)
	p := strings.ToLower(s.basePath + path)
	// Authentication first: an unauthenticated call learns nothing from
	// header checks.
	s.e.Add(method, p, h, append([]echo.MiddlewareFunc{s.authenticate(op), keyfactorHeaders}, mw...)...)
	s.endpoints = append(s.endpoints, method+" "+strings.ReplaceAll(path, ":id", "{id}"))
	s.canonical[p] = s.basePath + path
}

// foldPath lower-cases the request path before routing. Keyfactor's routes
// are case-insensitive (ASP.NET) and clients rely on it, e.g. /KeyfactorApi
// from Keyfactor's own docs. Every csrd route is registered lower-case and
// path parameters are numeric ids, so nothing is lost.
func (s *Server) foldPath(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		r.URL.Path = strings.ToLower(r.URL.Path)
		r.URL.RawPath = ""
		return next(c)
	}
}

// requestID gives every request an id (or keeps a sane one the client
// sent), returns it in X-Request-Id and puts it on every log line.
func (s *Server) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		rid := c.Request().Header.Get(echo.HeaderXRequestID)
		if !saneRequestID(rid) {
			var b [8]byte
			_, _ = rand.Read(b[:])
			rid = hex.EncodeToString(b[:])
		}
		c.Response().Header().Set(echo.HeaderXRequestID, rid)
		c.Set(ctxLogger, s.log.With().Str("request_id", rid).Logger())
		return next(c)
	}
}

func saneRequestID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !requestIDRune(r) {
			return false
		}
	}
	return true
}

// requestIDRune: a client's request id is echoed in a header and logged, so
// it keeps to letters, digits and "-_.".
func requestIDRune(r rune) bool {
	switch {
	case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		return true
	}
	return r == '-' || r == '_' || r == '.'
}

const ctxLogger = "csrd.logger"

// requestLogger returns the request-scoped logger (with request id).
func requestLogger(c echo.Context, fallback zerolog.Logger) *zerolog.Logger {
	if l, ok := c.Get(ctxLogger).(zerolog.Logger); ok {
		return &l
	}
	return &fallback
}

func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			// Let the error handler write the response first so the
			// status logged is the one the client got.
			c.Error(err)
		}
		r := c.Request()
		lvl := zerolog.InfoLevel
		if c.Response().Status < 500 && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz") {
			lvl = zerolog.DebugLevel // probes every few seconds would drown the log
		}
		requestLogger(c, s.log).WithLevel(lvl).
			Str("method", r.Method).Str("path", r.URL.Path).Str("remote", c.RealIP()).
			Int("status", c.Response().Status).Dur("duration", time.Since(start)).
			Msg("request")
		return nil
	}
}

func recoverPanics(log zerolog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if p := recover(); p != nil {
					if e, ok := p.(error); ok && errors.Is(e, http.ErrAbortHandler) {
						panic(p)
					}
					requestLogger(c, log).Error().Interface("panic", p).Msg("handler panicked")
					err = &panicError{}
				}
			}()
			return next(c)
		}
	}
}

type panicError struct{}

func (*panicError) Error() string { return "api: handler panicked" }

// keyfactorHeaders enforces Keyfactor's request headers on every API call:
// X-Keyfactor-Requested-With is mandatory (Keyfactor uses it as a CSRF
// guard), and X-Keyfactor-Api-Version, when sent, must be 1.
func keyfactorHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		if strings.TrimSpace(h.Get("X-Keyfactor-Requested-With")) == "" {
			return &Error{Status: http.StatusBadRequest, Code: CodeMissingHeader,
				Msg: "the X-Keyfactor-Requested-With header is required (APIClient or XMLHttpRequest)"}
		}
		if v := strings.TrimSpace(h.Get("X-Keyfactor-Api-Version")); v != "" && v != "1" && v != "1.0" {
			return &Error{Status: http.StatusBadRequest, Code: CodeUnsupportedAPIVer,
				Msg: "X-Keyfactor-Api-Version " + v + " is not supported; this endpoint is version 1"}
		}
		return next(c)
	}
}

// statusEndpoints answers Status/Endpoints: Keyfactor's SDK calls it when a
// client is created and refuses to work unless it gets an array of strings.
// It lists the endpoints the caller may use, as Keyfactor does.
func (s *Server) statusEndpoints(c echo.Context) error {
	id, _ := identityOf(c)
	out := make([]string, 0, len(s.endpoints))
	for _, ep := range s.endpoints {
		method, path, _ := strings.Cut(ep, " ")
		if op, _ := routeOperation(method, path); op == "" || id.Grants.Allows(op) {
			out = append(out, ep)
		}
	}
	return c.JSON(http.StatusOK, out)
}
