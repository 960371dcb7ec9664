package testenv

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// FaultMode is how a FaultProxy treats the requests it receives.
type FaultMode int

// Fault modes.
const (
	// Pass forwards every request to the upstream and its answer back.
	Pass FaultMode = iota
	// Down refuses: the connection is closed without an answer, as when the
	// upstream's process has gone away.
	Down
	// Slow holds each request for Fault.Delay (or until the client gives up),
	// then forwards it.
	Slow
	// Garbage answers 200 with Fault.Body (default: an HTML page), which is
	// not Prometheus API JSON.
	Garbage
	// Truncated forwards the request and returns the first half of the
	// upstream's answer: JSON cut short.
	Truncated
	// Partial forwards the request with the series matching Fault.Hide
	// hidden, as when the store holding them does not answer (a Thanos or
	// Mimir partial response), and sets Fault.Warnings in the answer.
	Partial
	// Status answers Fault.Code with Fault.Body (default: the status text).
	Status
)

var faultModeNames = [...]string{Pass: "pass", Down: "down", Slow: "slow", Garbage: "garbage",
	Truncated: "truncated", Partial: "partial", Status: "status"}

// String returns the mode's name, e.g. "slow".
func (m FaultMode) String() string {
	if m < 0 || int(m) >= len(faultModeNames) {
		return "unknown"
	}
	return faultModeNames[m]
}

// Fault is a FaultProxy's behaviour.
type Fault struct {
	Mode FaultMode
	// Delay is how long Slow holds each request.
	Delay time.Duration
	// Code is the HTTP status Status answers.
	Code int
	// Body is what Garbage or Status answer.
	Body string
	// Hide is the one label matcher of Partial, as a selector such as
	// {code=~"5.."}: every vector selector of a query gets the matcher's
	// inverse, so the series it matches take no part in the answer, and
	// the answer's result loses the series it matches.
	Hide string
	// EmptyIf, with Partial, answers a query that contains it with an
	// empty result, as when every series it needs was lost.
	EmptyIf string
	// Warnings are the warnings Partial adds to the answer.
	Warnings []string
}

// PartialWarning is the warning Thanos gives with a partial response.
const PartialWarning = "partial response: store unavailable: receive 10.0.0.7:10901: rpc error: code = Unavailable"

// FaultProxy is an HTTP reverse proxy on a loopback port in front of a real
// upstream (a Prometheus server, a scrape target) whose behaviour tests
// switch at run time with Set. It counts the requests it handled in each
// mode.
type FaultProxy struct {
	// URL is the proxy's base URL: use it in place of the upstream's.
	URL string

	upstream *url.URL
	rp       *httputil.ReverseProxy
	srv      *http.Server

	mu    sync.Mutex
	fault Fault
	hide  *labels.Matcher // Fault.Hide parsed
	inv   *labels.Matcher // its inverse
	count [len(faultModeNames)]atomic.Int64
}

type faultKey struct{}

// StartFaultProxy starts a FaultProxy in Pass mode in front of upstream (a
// base URL such as http://127.0.0.1:9090). It is stopped at cleanup.
func StartFaultProxy(t testing.TB, upstream string) *FaultProxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("fault proxy upstream %q: %v", upstream, err)
	}
	p := &FaultProxy{upstream: u}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
			// The transport then asks for gzip itself and decompresses, so
			// that the answer's body can be edited.
			r.Out.Header.Del("Accept-Encoding")
		},
		ModifyResponse: p.modify,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, "fault proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.URL = "http://" + l.Addr().String()
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.srv.Shutdown(ctx)
	})
	return p
}

// Set switches the proxy to f from the next request on. It panics on a
// Partial fault whose Hide is not one label matcher.
func (p *FaultProxy) Set(f Fault) {
	var hide, inv *labels.Matcher
	if f.Mode == Partial && f.Hide != "" {
		ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(f.Hide)
		if err != nil || len(ms) != 1 {
			panic(fmt.Sprintf("fault proxy: hide %q must be one label matcher (%v)", f.Hide, err))
		}
		hide = ms[0]
		if inv, err = hide.Inverse(); err != nil {
			panic(fmt.Sprintf("fault proxy: hide %q: %v", f.Hide, err))
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault, p.hide, p.inv = f, hide, inv
}

// Fault returns the proxy's current behaviour.
func (p *FaultProxy) Fault() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fault
}

// Requests returns how many requests the proxy handled in mode m.
func (p *FaultProxy) Requests(m FaultMode) int {
	if m < 0 || int(m) >= len(p.count) {
		return 0
	}
	return int(p.count[m].Load())
}

// ServeHTTP handles one request according to the current fault.
func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	f, hide, inv := p.fault, p.hide, p.inv
	p.mu.Unlock()
	p.count[f.Mode].Add(1)

	switch f.Mode {
	case Down:
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic(http.ErrAbortHandler)
		}
		conn, _, err := hj.Hijack()
		if err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // a reset, as from a dead process
			}
			_ = conn.Close()
		}
		return
	case Slow:
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	case Garbage:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, cmp.Or(f.Body, "<html><body><h1>Welcome to nginx!</h1></body></html>\n"))
		return
	case Status:
		code := cmp.Or(f.Code, http.StatusServiceUnavailable)
		http.Error(w, cmp.Or(f.Body, http.StatusText(code)), code)
		return
	}
	pf := partialFault{Fault: f, hide: hide}
	if f.Mode == Partial {
		var err error
		if pf.query, err = hideSeries(r, inv); err != nil {
			http.Error(w, "fault proxy: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	ctx := context.WithValue(r.Context(), faultKey{}, pf)
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

type partialFault struct {
	Fault
	hide  *labels.Matcher
	query string // as the client sent it
}

// hideSeries adds inv, unless nil, to every vector selector of the
// request's query parameter, in the URL and in a form body. It returns the
// query as it was.
func hideSeries(r *http.Request, inv *labels.Matcher) (string, error) {
	orig := ""
	rewrite := func(vals url.Values) (bool, error) {
		q := vals.Get("query")
		if q == "" {
			return false, nil
		}
		orig = q
		if inv == nil {
			return false, nil
		}
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
		if err != nil {
			return false, fmt.Errorf("query %q: %w", q, err)
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				vs.LabelMatchers = append(vs.LabelMatchers, inv)
			}
			return nil
		})
		vals.Set("query", expr.String())
		return true, nil
	}
	q := r.URL.Query()
	ok, err := rewrite(q)
	if err != nil {
		return "", err
	}
	if ok {
		r.URL.RawQuery = q.Encode()
	}
	if r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if err := r.ParseForm(); err != nil {
			return "", err
		}
		form := r.PostForm
		if _, err := rewrite(form); err != nil {
			return "", err
		}
		body := form.Encode()
		r.Body = io.NopCloser(strings.NewReader(body))
		r.ContentLength = int64(len(body))
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
		r.Form, r.PostForm = nil, nil
	}
	return orig, nil
}

// modify edits the upstream's answer for Truncated and Partial.
func (p *FaultProxy) modify(resp *http.Response) error {
	f, _ := resp.Request.Context().Value(faultKey{}).(partialFault)
	if f.Mode != Truncated && f.Mode != Partial {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	switch f.Mode {
	case Truncated:
		body = body[:len(body)/2]
	case Partial:
		if resp.StatusCode == http.StatusOK {
			empty := f.EmptyIf != "" && strings.Contains(f.query, f.EmptyIf)
			if b, err := partialAnswer(body, f.hide, empty, f.Warnings); err == nil {
				body = b
			}
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// partialAnswer drops the vector result's series that hide matches (every
// series when empty) and adds warnings to a Prometheus API answer. An answer
// that is not a vector keeps its data.
func partialAnswer(body []byte, hide *labels.Matcher, empty bool, warnings []string) ([]byte, error) {
	var ans map[string]json.RawMessage
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, err
	}
	var data struct {
		ResultType string       `json:"resultType"`
		Result     model.Vector `json:"result"`
	}
	if (hide != nil || empty) && json.Unmarshal(ans["data"], &data) == nil && data.ResultType == "vector" {
		kept := model.Vector{}
		for _, s := range data.Result {
			if !empty && !hide.Matches(string(s.Metric[model.LabelName(hide.Name)])) {
				kept = append(kept, s)
			}
		}
		data.Result = kept
		b, err := json.Marshal(data)
		if err != nil {
			return nil, err
		}
		ans["data"] = b
	}
	if len(warnings) > 0 {
		var old []string
		_ = json.Unmarshal(ans["warnings"], &old)
		b, err := json.Marshal(append(old, warnings...))
		if err != nil {
			return nil, err
		}
		ans["warnings"] = b
	}
	return json.Marshal(ans)
}
