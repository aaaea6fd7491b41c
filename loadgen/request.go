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
)

// GeneratePath is the Generate endpoint relative to the base URL.
const GeneratePath = "/CSRGeneration/Generate"

// Answer is the outcome of one Generate request.
type Answer struct {
	Status     int    // 0 when the request failed in transport (Err set)
	ID         int64  // record id from the Location header of a 200
	CSR        string // PEM of a 200
	ErrorCode  string // Keyfactor ErrorCode of an error answer
	Message    string
	RetryAfter string // Retry-After header, required on a 503
	Err        error  // transport failure or a malformed answer
}

// Client sends Generate requests to one csrd.
type Client struct {
	HTTP *http.Client
	Base string // e.g. http://127.0.0.1:8080/KeyfactorAPI
	// Authorization, when set, is sent as the Authorization header.
	Authorization string
}

// Generate posts body to Generate and decodes the answer. A 200 must carry
// a CSR and a Location naming the record; an error answer must carry
// Keyfactor's error body; anything else is reported in Err.
func (c *Client) Generate(ctx context.Context, body []byte) Answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+GeneratePath, bytes.NewReader(body))
	if err != nil {
		return Answer{Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Keyfactor-Requested-With", "APIClient")
	if c.Authorization != "" {
		req.Header.Set("Authorization", c.Authorization)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Answer{Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	a := Answer{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	if err != nil {
		a.Err = fmt.Errorf("reading the %d answer: %w", resp.StatusCode, err)
		return a
	}
	if resp.StatusCode == http.StatusOK {
		var ok struct{ CSR string }
		if err := json.Unmarshal(raw, &ok); err != nil || !strings.HasPrefix(ok.CSR, "-----BEGIN CERTIFICATE REQUEST-----") {
			a.Err = fmt.Errorf("200 without a CSR: %.200q", raw)
			return a
		}
		a.CSR = ok.CSR
		loc := resp.Header.Get("Location")
		id, err := strconv.ParseInt(path.Base(loc), 10, 64)
		if err != nil || !strings.Contains(strings.ToLower(loc), "/csrgeneration/pending/") {
			a.Err = fmt.Errorf("200 with Location %q", loc)
			return a
		}
		a.ID = id
		return a
	}
	var eb struct{ ErrorCode, Message string }
	if err := json.Unmarshal(raw, &eb); err != nil || !strings.HasPrefix(eb.ErrorCode, "0x") || eb.Message == "" {
		a.Err = fmt.Errorf("%d without an error body: %.200q", resp.StatusCode, raw)
		return a
	}
	a.ErrorCode, a.Message = eb.ErrorCode, eb.Message
	if resp.StatusCode == http.StatusServiceUnavailable && a.RetryAfter == "" {
		a.Err = fmt.Errorf("503 without Retry-After: %s", eb.Message)
	}
	return a
}
