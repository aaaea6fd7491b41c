package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"time"
)

// leanClient speaks just enough HTTP/1.1 to drive Generate over keep-alive
// connections: one prepared request head, one write per request, and a
// response read straight off the connection (Content-Length or chunked).
//
// Why not net/http: the client runs on the same two cores as csrd, so its
// CPU is taken from csrd's side of a cell while the raw loop pays nothing of
// the kind. net/http's client costs about 0.4 ms of CPU per request on this
// machine (its per-connection read and write goroutines hand every request
// and response over twice); a client on another host costs csrd nothing. The
// lean client shrinks that distortion, not csrd's work: csrd still parses a
// real HTTP/1.1 request from a TCP socket and the answer is still checked.
// -net-http selects net/http's client to compare.
type leanClient struct {
	addr  string // host:port
	head  []byte // request line and headers up to Content-Length's value
	conns chan *leanConn
}

type leanConn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
}

func newLeanClient(srv *server, conns int) (*leanClient, error) {
	u, err := url.Parse(srv.url + "/CSRGeneration/Generate")
	if err != nil {
		return nil, err
	}
	head := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"X-Keyfactor-Requested-With: APIClient\r\nAuthorization: Bearer %s\r\nContent-Length: ",
		u.EscapedPath(), u.Host, srv.bearer)
	return &leanClient{addr: u.Host, head: head, conns: make(chan *leanConn, conns)}, nil
}

// maxResponse bounds what is read of one answer.
const maxResponse = 1 << 20

func (c *leanClient) generate(ctx context.Context, body []byte) error {
	lc, err := c.get(ctx)
	if err != nil {
		return err
	}
	status, b, keep, err := lc.roundTrip(ctx, c.head, body)
	if err != nil || !keep {
		_ = lc.c.Close()
	} else {
		c.put(lc)
	}
	if err != nil {
		return err
	}
	return answer(status, b)
}

func (c *leanClient) get(ctx context.Context) (*leanConn, error) {
	select {
	case lc := <-c.conns:
		return lc, nil
	default:
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	return &leanConn{c: nc, r: bufio.NewReaderSize(nc, 4096)}, nil
}

func (c *leanClient) put(lc *leanConn) {
	select {
	case c.conns <- lc:
	default:
		_ = lc.c.Close()
	}
}

func (c *leanClient) close() {
	for {
		select {
		case lc := <-c.conns:
			_ = lc.c.Close()
		default:
			return
		}
	}
}

// roundTrip sends one request and reads its answer: status, body, and
// whether the connection may carry another request.
func (lc *leanConn) roundTrip(ctx context.Context, head, body []byte) (int, []byte, bool, error) {
	// A cancelled run (SIGINT) must not wait for csrd: the deadline makes
	// the blocked read or write return.
	stop := context.AfterFunc(ctx, func() { _ = lc.c.SetDeadline(time.Now()) })
	defer stop()
	lc.buf = append(strconv.AppendInt(append(lc.buf[:0], head...), int64(len(body)), 10), "\r\n\r\n"...)
	lc.buf = append(lc.buf, body...)
	if _, err := lc.c.Write(lc.buf); err != nil {
		return 0, nil, false, err
	}
	return readResponse(lc.r)
}

var errFraming = errors.New("bench: response without a length the client understands")

// readResponse reads one HTTP/1.1 response from r.
func readResponse(r *bufio.Reader) (status int, body []byte, keep bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, false, fmt.Errorf("bench: bad status line %q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, nil, false, fmt.Errorf("bench: bad status line %q", line)
	}
	keep = line[7] == '1' // HTTP/1.1 keeps the connection unless told otherwise
	length, chunked := -1, false
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return status, nil, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return status, nil, false, fmt.Errorf("bench: bad header line %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return status, nil, false, fmt.Errorf("bench: bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			keep = keep && !bytes.EqualFold(value, []byte("close"))
		}
	}
	switch {
	case chunked:
		body, err = readChunked(r)
	case length > maxResponse:
		return status, nil, false, fmt.Errorf("bench: response of %d bytes", length)
	case length >= 0:
		body = make([]byte, length)
		_, err = io.ReadFull(r, body)
	default:
		return status, nil, false, errFraming
	}
	return status, body, keep && err == nil, err
}

// readChunked reads a chunked body and its (ignored) trailer.
func readChunked(r *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		n, err := strconv.ParseUint(string(size), 16, 32)
		if err != nil {
			return nil, fmt.Errorf("bench: bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailer, up to the empty line
				line, err := r.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return body, nil
				}
			}
		}
		if len(body)+int(n) > maxResponse {
			return nil, fmt.Errorf("bench: response over %d bytes", maxResponse)
		}
		start := len(body)
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(r, body[start:]); err != nil {
			return nil, err
		}
		if _, err := r.Discard(2); err != nil { // CRLF after the chunk
			return nil, err
		}
	}
}
