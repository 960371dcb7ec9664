package embedded

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// connCounter counts the connections a test server accepted.
type connCounter struct{ n atomic.Int32 }

func (c *connCounter) track(_ net.Conn, s http.ConnState) {
	if s == http.StateNew {
		c.n.Add(1)
	}
}

// get does one request through tr and reads the whole body.
func get(ctx context.Context, tr http.RoundTripper, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, http.NoBody)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), nil
}

// The scrape transport keeps one connection alive across requests, with
// bodies of a known length or chunked, and asks for no compression.
func TestScrapeTransportKeepsTheConnection(t *testing.T) {
	var conns connCounter
	var gzipAsked atomic.Bool
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			gzipAsked.Store(true)
		}
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush() // no Content-Length: chunked
		}
		fmt.Fprintf(w, "up{path=%q} 1\n", r.URL.Path)
	}))
	srv.Config.ConnState = conns.track
	srv.Start()
	defer srv.Close()
	tr := newScrapeTransport()
	defer tr.CloseIdleConnections()
	for i := range 6 {
		path := "/fixed"
		if i%2 == 1 {
			path = "/chunked"
		}
		body, err := get(context.Background(), tr, srv.URL+path)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if want := fmt.Sprintf("up{path=%q} 1\n", path); body != want {
			t.Fatalf("request %d: body %q, want %q", i, body, want)
		}
	}
	if n := conns.n.Load(); n != 1 {
		t.Errorf("%d connections for 6 requests, want 1", n)
	}
	if gzipAsked.Load() {
		t.Error("the transport asked for gzip")
	}
}

// A kept-alive connection the target closed while idle is replaced
// without failing the request; one the answer asks to close is not kept.
func TestScrapeTransportReconnects(t *testing.T) {
	var conns connCounter
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("close") != "" {
			w.Header().Set("Connection", "close")
		}
		fmt.Fprintln(w, "up 1")
	}))
	srv.Config.ConnState = conns.track
	srv.Start()
	defer srv.Close()
	tr := newScrapeTransport()
	defer tr.CloseIdleConnections()

	if _, err := get(context.Background(), tr, srv.URL); err != nil {
		t.Fatal(err)
	}
	srv.CloseClientConnections()
	if _, err := get(context.Background(), tr, srv.URL); err != nil {
		t.Fatalf("after the target closed the idle connection: %v", err)
	}
	if n := conns.n.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
	if _, err := get(context.Background(), tr, srv.URL+"?close=1"); err != nil {
		t.Fatal(err)
	}
	if _, err := get(context.Background(), tr, srv.URL); err != nil {
		t.Fatal(err)
	}
	if n := conns.n.Load(); n != 3 {
		t.Errorf("%d connections after an answer with Connection: close, want 3", n)
	}
}

// A request whose context ends while the target has not answered, or is
// still sending the body, fails with the context's error at once, and its
// connection is not kept.
func TestScrapeTransportFollowsTheContext(t *testing.T) {
	var conns connCounter
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			fmt.Fprintln(w, "up 1")
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	srv.Config.ConnState = conns.track
	srv.Start()
	defer srv.Close()
	defer close(release)
	tr := newScrapeTransport()
	defer tr.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := get(ctx, tr, srv.URL+"/head"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no answer before the deadline: %v, want context.DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/body", http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "up 1\n" {
		t.Fatalf("body's start %q, %v", buf, err)
	}
	cancel()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("the body read to its end after the context was canceled")
	}
	_ = resp.Body.Close()
	tr.mu.Lock()
	idle := tr.idle
	tr.mu.Unlock()
	if idle != nil {
		t.Error("a connection cut short was kept")
	}
}

// An https target is scraped over TLS, verified against the roots given.
func TestScrapeTransportTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "up 1")
	}))
	defer srv.Close()
	tr := newScrapeTransport()
	defer tr.CloseIdleConnections()
	if _, err := get(context.Background(), tr, srv.URL); err == nil {
		t.Fatal("a certificate of no known authority was accepted")
	}
	tr.rootCAs = x509.NewCertPool()
	tr.rootCAs.AddCert(srv.Certificate())
	for range 2 {
		if body, err := get(context.Background(), tr, srv.URL); err != nil || body != "up 1\n" {
			t.Fatalf("over TLS: %q, %v", body, err)
		}
	}
}

// A request the environment sends through a proxy goes through
// net/http's transport, to the proxy.
func TestScrapeTransportProxy(t *testing.T) {
	var proxied atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.IsAbs() {
			proxied.Add(1)
		}
		fmt.Fprintln(w, "up 1")
	}))
	defer proxy.Close()
	pu, err := url.Parse(proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr := newScrapeTransport()
	defer tr.CloseIdleConnections()
	tr.proxy = func(*http.Request) (*url.URL, error) { return pu, nil }
	if body, err := get(context.Background(), tr, "http://target.invalid/metrics"); err != nil || body != "up 1\n" {
		t.Fatalf("through the proxy: %q, %v", body, err)
	}
	if n := proxied.Load(); n != 1 {
		t.Errorf("the proxy saw %d requests for another host, want 1", n)
	}
}

// Credentials in the scrape URL reach the target as basic auth, as with
// net/http's transport.
func TestScrapeTransportBasicAuth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "scraper" || p != "s3cret" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprintln(w, "up 1")
	}))
	defer srv.Close()
	tr := newScrapeTransport()
	defer tr.CloseIdleConnections()
	u := strings.Replace(srv.URL, "http://", "http://scraper:s3cret@", 1)
	if body, err := get(context.Background(), tr, u); err != nil || body != "up 1\n" {
		t.Errorf("with credentials in the URL: %q, %v", body, err)
	}
	if _, err := get(context.Background(), tr, srv.URL); err == nil {
		t.Error("without credentials the target answered 200")
	}
}
