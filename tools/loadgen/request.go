package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// Endpoints relative to the base URL.
const (
	GeneratePath  = "/CSRGeneration/Generate"
	PendingPath   = "/CSRGeneration/Pending/" // + id
	ImportPath    = "/Certificates/Import"
	EndpointsPath = "/Status/Endpoints"
)

// Answer is the outcome of one request.
type Answer struct {
	Status     int    // 0 when the request failed in transport (Err set)
	ID         int64  // record id: Location of a Generate 200, Id of an Import 200
	CSR        string // PEM of a Generate 200
	ErrorCode  string // Keyfactor ErrorCode of an error answer
	Message    string
	RetryAfter string // Retry-After header, required on a 503
	Err        error  // transport failure or a malformed answer
}

// Failure is nil for a well-formed success and otherwise the error a
// caller counts: the transport's, or a *StatusError for any other answer.
func (a Answer) Failure() error {
	switch {
	case a.Status == 0:
		return a.Err
	case a.Status < 300 && a.Err == nil:
		return nil
	}
	return &StatusError{Status: a.Status, ErrorCode: a.ErrorCode, Message: a.Message, Err: a.Err}
}

// StatusError is an answer that was not a well-formed success: an error
// status with Keyfactor's error body, or a malformed answer (Err).
type StatusError struct {
	Status             int
	ErrorCode, Message string
	Err                error
}

func (e *StatusError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("loadgen: HTTP %d: %v", e.Status, e.Err)
	}
	return fmt.Sprintf("loadgen: HTTP %d %s: %s", e.Status, e.ErrorCode, e.Message)
}

func (e *StatusError) Unwrap() error { return e.Err }

// Client sends Keyfactor API requests to one csrd.
type Client struct {
	HTTP *http.Client
	Base string // e.g. http://127.0.0.1:8080/KeyfactorAPI
	// Authorization, when set, is sent as the Authorization header.
	Authorization string
}

// NewClient returns a client of base that keeps a connection alive for
// each of conns requests in flight, and opens no more than that: a closed
// loop of conns workers then reuses the same conns connections throughout.
func NewClient(base, authorization string, conns int, timeout time.Duration) *Client {
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
	}
	return &Client{HTTP: &http.Client{Transport: tr, Timeout: timeout}, Base: strings.TrimRight(base, "/"), Authorization: authorization}
}

// CloseIdle closes the client's idle connections.
func (c *Client) CloseIdle() { c.HTTP.CloseIdleConnections() }

// Generate posts body to Generate. A 200 must carry a CSR and a Location
// naming the record.
func (c *Client) Generate(ctx context.Context, body []byte) Answer {
	a, raw, hdr := c.do(ctx, http.MethodPost, c.Base+GeneratePath, body)
	if a.Status != http.StatusOK || a.Err != nil {
		return a
	}
	var ok struct{ CSR string }
	if err := json.Unmarshal(raw, &ok); err != nil || !strings.HasPrefix(ok.CSR, "-----BEGIN CERTIFICATE REQUEST-----") {
		a.Err = fmt.Errorf("200 without a CSR: %.200q", raw)
		return a
	}
	a.CSR = ok.CSR
	loc := hdr.Get("Location")
	id, err := strconv.ParseInt(path.Base(loc), 10, 64)
	if err != nil || !strings.Contains(strings.ToLower(loc), "/csrgeneration/pending/") {
		a.Err = fmt.Errorf("200 with Location %q", loc)
		return a
	}
	a.ID = id
	return a
}

// Delete deletes pending CSR id; success is a 204.
func (c *Client) Delete(ctx context.Context, id int64) Answer {
	a, _, _ := c.do(ctx, http.MethodDelete, c.Base+PendingPath+strconv.FormatInt(id, 10), nil)
	if a.Err == nil && a.Status < 300 && a.Status != http.StatusNoContent {
		a.Err = fmt.Errorf("delete answered %d, want 204", a.Status)
	}
	return a
}

// Import posts an issued certificate (PEM); a 200 names the record.
func (c *Client) Import(ctx context.Context, certPEM string) Answer {
	body, _ := json.Marshal(map[string]string{"Certificate": certPEM})
	a, raw, _ := c.do(ctx, http.MethodPost, c.Base+ImportPath, body)
	if a.Status != http.StatusOK || a.Err != nil {
		return a
	}
	var ok struct{ ID int64 }
	if err := json.Unmarshal(raw, &ok); err != nil || ok.ID < 1 {
		a.Err = fmt.Errorf("import 200 without an Id: %.200q", raw)
		return a
	}
	a.ID = ok.ID
	return a
}

// Ping asks Status/Endpoints, which csrd answers 200 once it serves.
func (c *Client) Ping(ctx context.Context) error {
	a, _, _ := c.do(ctx, http.MethodGet, c.Base+EndpointsPath, nil)
	if a.Err == nil && a.Status != http.StatusOK {
		return fmt.Errorf("loadgen: %s answered %d", EndpointsPath, a.Status)
	}
	return a.Err
}

// maxAnswer bounds what is read of one answer (csrd's /metrics included).
const maxAnswer = 4 << 20

// do sends one request to url. Every error answer must carry Keyfactor's
// error body, and a 503 a Retry-After; otherwise Err says what was wrong.
func (c *Client) do(ctx context.Context, method, url string, body []byte) (Answer, []byte, http.Header) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return Answer{Err: err}, nil, nil
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	if c.Authorization != "" {
		req.Header.Set("Authorization", c.Authorization)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Answer{Err: err}, nil, nil
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	a := Answer{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	if err != nil {
		a.Err = fmt.Errorf("reading the %d answer: %w", resp.StatusCode, err)
		return a, nil, resp.Header
	}
	if resp.StatusCode < 400 {
		return a, raw, resp.Header
	}
	var eb struct{ ErrorCode, Message string }
	if err := json.Unmarshal(raw, &eb); err != nil || !strings.HasPrefix(eb.ErrorCode, "0x") || eb.Message == "" {
		a.Err = fmt.Errorf("%d without an error body: %.200q", resp.StatusCode, raw)
		return a, raw, resp.Header
	}
	a.ErrorCode, a.Message = eb.ErrorCode, eb.Message
	if resp.StatusCode == http.StatusServiceUnavailable && a.RetryAfter == "" {
		a.Err = fmt.Errorf("503 without Retry-After: %s", eb.Message)
	}
	return a, raw, resp.Header
}
