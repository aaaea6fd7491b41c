package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// heapMetric is the Go runtime's heap in use, as csrd's /metrics exports it.
const heapMetric = "go_memstats_heap_inuse_bytes"

// GoHeap reads csrd's Go heap in use from its /metrics (at the root of the
// base URL's host). Next to the process RSS it tells csrd's own memory from
// what the PKCS#11 module holds in C. A csrd that does not let this client
// read metrics answers an error, and the report leaves the figure out.
func (c *Client) GoHeap(ctx context.Context) (int64, error) {
	u, err := url.Parse(c.Base)
	if err != nil {
		return 0, fmt.Errorf("loadgen: metrics: %w", err)
	}
	u.Path, u.RawQuery = "/metrics", ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, fmt.Errorf("loadgen: metrics: %w", err)
	}
	if c.Authorization != "" {
		req.Header.Set("Authorization", c.Authorization)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("loadgen: metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("loadgen: metrics: status %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), heapMetric+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("loadgen: metrics: %s %q: %w", heapMetric, v, err)
			}
			return int64(f), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("loadgen: metrics: %w", err)
	}
	return 0, fmt.Errorf("loadgen: metrics: no %s", heapMetric)
}
