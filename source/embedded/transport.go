package embedded

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// scrapeTransport is the http.RoundTripper of a Source's own client: HTTP/1.1
// over one kept-alive connection to the target, written and read by the
// scrape's own goroutine. net/http's Transport runs a read and a write loop
// goroutine for each kept-alive connection: for a thousand targets, two
// thousand goroutines and their buffers, idle between scrapes. Between
// scrapes a scrapeTransport holds the connection alone; its buffers are
// shared by all of them and taken only while a scrape runs.
//
// A request through a proxy (the environment's HTTP_PROXY, HTTPS_PROXY and
// NO_PROXY, as net/http reads them) or of a scheme other than http and https
// goes through a standard http.Transport instead (fallback).
//
// It asks for no compression: a scrape reads the body as the target writes
// it, which costs the target and Guardian less CPU than gzip for the tens of
// KiB a target exposes.
type scrapeTransport struct {
	dialer net.Dialer
	// proxy tells the proxy of a request (http.ProxyFromEnvironment).
	proxy func(*http.Request) (*url.URL, error)
	// rootCAs verify the targets' certificates; nil, the system's.
	rootCAs *x509.CertPool

	fallbackOnce sync.Once

	mu sync.Mutex
	// fallbackT is fallback's transport, once built.
	fallbackT *http.Transport
	idle      net.Conn // the kept-alive connection, when no scrape uses it
	// closed: CloseIdleConnections ran; a connection freed after it is
	// closed instead of kept.
	closed bool
}

// newScrapeTransport returns a transport dialing with the defaults of
// http.DefaultTransport (30 s to connect, 30 s keep-alive probes).
func newScrapeTransport() *scrapeTransport {
	return &scrapeTransport{
		dialer: net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second},
		proxy:  http.ProxyFromEnvironment,
	}
}

// fallback returns the transport of the requests t does not carry itself:
// through a proxy, or of another scheme. It is built on first use.
func (t *scrapeTransport) fallback() *http.Transport {
	t.fallbackOnce.Do(func() {
		ft := http.DefaultTransport.(*http.Transport).Clone()
		ft.Proxy = t.proxy
		ft.TLSClientConfig = t.tlsConfig("")
		t.mu.Lock()
		t.fallbackT = ft
		t.mu.Unlock()
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fallbackT
}

// tlsConfig is the TLS configuration of a connection to host.
func (t *scrapeTransport) tlsConfig(host string) *tls.Config {
	return &tls.Config{ServerName: host, RootCAs: t.rootCAs, NextProtos: []string{"http/1.1"}}
}

// readers and writers are the connection buffers of the scrapes under way.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 1024) }}
)

// errConnReused marks a failure on a kept-alive connection before any byte
// of the answer arrived: the target may have closed it while idle, and the
// request is sent again on a new one.
var errConnReused = errors.New("kept-alive connection failed")

// RoundTrip sends req, a GET without body, and returns the answer; its body
// reads from the connection, which Close of the body frees for the next
// scrape when the body was read to its end.
func (t *scrapeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return t.fallback().RoundTrip(req)
	}
	if p, err := t.proxy(req); err != nil || p != nil {
		return t.fallback().RoundTrip(req)
	}
	conn, reused, err := t.conn(req)
	if err != nil {
		return nil, err
	}
	resp, err := t.exchange(req, conn, reused)
	if errors.Is(err, errConnReused) {
		if conn, _, err = t.dial(req); err != nil {
			return nil, err
		}
		resp, err = t.exchange(req, conn, false)
	}
	return resp, err
}

// conn returns the idle connection, or a new one.
func (t *scrapeTransport) conn(req *http.Request) (c net.Conn, reused bool, err error) {
	t.mu.Lock()
	c, t.idle = t.idle, nil
	t.mu.Unlock()
	if c != nil {
		return c, true, nil
	}
	return t.dial(req)
}

// dial connects to req's host, with TLS for https.
func (t *scrapeTransport) dial(req *http.Request) (net.Conn, bool, error) {
	ctx := req.Context()
	addr := canonicalAddr(req)
	c, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	if req.URL.Scheme == "https" {
		tc := tls.Client(c, t.tlsConfig(req.URL.Hostname()))
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = c.Close()
			return nil, false, err
		}
		c = tc
	}
	return c, false, nil
}

// canonicalAddr is req's host with the scheme's port when it names none.
func canonicalAddr(req *http.Request) string {
	port := req.URL.Port()
	if port == "" {
		port = "80"
		if req.URL.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(req.URL.Hostname(), port)
}

// exchange writes req on c and reads the answer's head. On c reused, a
// failure before the answer's first byte wraps errConnReused.
func (t *scrapeTransport) exchange(req *http.Request, c net.Conn, reused bool) (*http.Response, error) {
	ctx := req.Context()
	// The context's end, its deadline included, sets a deadline in the
	// past: the read or write under way fails, and the error returned is
	// the context's.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error, early bool) (*http.Response, error) {
		stop()
		_ = c.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		if early && reused {
			return nil, fmt.Errorf("%w: %w", errConnReused, err)
		}
		return nil, err
	}

	w := writers.Get().(*bufio.Writer)
	w.Reset(c)
	err := req.Write(w)
	if err == nil {
		err = w.Flush()
	}
	w.Reset(nil)
	writers.Put(w)
	if err != nil {
		return fail(err, true)
	}

	r := readers.Get().(*bufio.Reader)
	r.Reset(c)
	if _, err := r.Peek(1); err != nil {
		r.Reset(nil)
		readers.Put(r)
		return fail(err, true)
	}
	resp, err := http.ReadResponse(r, req)
	if err != nil {
		r.Reset(nil)
		readers.Put(r)
		return fail(err, false)
	}
	resp.Body = &scrapeBody{t: t, c: c, r: r, body: resp.Body, stop: stop, keep: !resp.Close && !req.Close}
	return resp, nil
}

// scrapeBody is an answer's body. Close frees the connection: kept for the
// next scrape when the body was read to its end, closed otherwise.
type scrapeBody struct {
	t    *scrapeTransport
	c    net.Conn
	r    *bufio.Reader
	body io.ReadCloser
	stop func() bool
	keep bool // the answer lets the connection be kept alive
	eof  bool // the body was read to its end
	done bool // Close ran
}

func (b *scrapeBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, errors.New("read on a closed body")
	}
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *scrapeBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	_ = b.body.Close()
	// A connection with bytes past the body (a target answering more than
	// asked) is not kept: they would be read as the next answer.
	keep := b.keep && b.eof && b.r.Buffered() == 0
	b.r.Reset(nil)
	readers.Put(b.r)
	cancelled := !b.stop()
	if keep && !cancelled {
		_ = b.c.SetDeadline(time.Time{})
		b.t.mu.Lock()
		if !b.t.closed && b.t.idle == nil {
			b.t.idle, b.c = b.c, nil
		}
		b.t.mu.Unlock()
	}
	if b.c != nil {
		_ = b.c.Close()
	}
	return nil
}

// CloseIdleConnections closes the kept-alive connection; http.Client's
// method of that name calls it. A connection in use is closed when its
// scrape ends.
func (t *scrapeTransport) CloseIdleConnections() {
	t.mu.Lock()
	c, fb := t.idle, t.fallbackT
	t.idle, t.closed = nil, true
	t.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
	if fb != nil {
		fb.CloseIdleConnections()
	}
}
