// Package verify judges whether a service recovered after a rollback: a
// probe finds the trigger values of the running version back within
// tolerance of the baseline (or under the absolute thresholds) and every
// smoke check passing. The incident counts how long the probes hold.
package verify

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/source"
	"github.com/rollback-guardian/guardian/trigger"
)

// Smoke is one smoke check: an HTTP request and what it must answer.
type Smoke struct {
	Name         string
	Method       string // default GET
	URL          string
	ExpectStatus int    // default 200
	BodyContains string // optional
	Timeout      time.Duration
}

// Options configure recovery.
type Options struct {
	// Tolerance is the relative distance to the baseline value still
	// counted as recovered (0.1: within 10%).
	Tolerance float64
	Smoke     []Smoke
	Client    *http.Client
}

// Check is one trigger's recovery judgement.
type Check struct {
	Trigger   string   `json:"trigger"`
	Query     string   `json:"query"`
	Value     *float64 `json:"value,omitempty"`
	Reference *float64 `json:"baseline,omitempty"`
	Recovered bool     `json:"recovered"`
	Why       string   `json:"why"`
}

// SmokeResult is one smoke check's outcome.
type SmokeResult struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Result is one probe.
type Result struct {
	At        time.Time     `json:"at"`
	Recovered bool          `json:"recovered"`
	Checks    []Check       `json:"checks"`
	Smoke     []SmokeResult `json:"smoke,omitempty"`
}

// Summary describes the result in one line.
func (r Result) Summary() string {
	var parts []string
	for _, c := range r.Checks {
		parts = append(parts, c.Trigger+": "+c.Why)
	}
	for _, s := range r.Smoke {
		parts = append(parts, "smoke "+s.Name+": "+s.Detail)
	}
	return strings.Join(parts, "; ")
}

// Verifier probes a service's recovery.
type Verifier struct {
	defs []trigger.Definition
	opts Options
}

// New returns a verifier for the service's trigger definitions.
func New(defs []trigger.Definition, opts Options) *Verifier {
	if opts.Client == nil {
		opts.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &Verifier{defs: defs, opts: opts}
}

// Probe judges once, at ts, the running version's trigger values against
// references (the baseline's values from before the deploy, by trigger
// name), then runs the smoke checks (only when the values recovered, so a
// broken service is not hammered). since is when the rollback finished: a
// trigger is not judged before a whole window of data from after it exists,
// so values from before the incident cannot pass for a recovery.
func (v *Verifier) Probe(ctx context.Context, ts, since time.Time, service, running string, references map[string]float64, q trigger.QueryFunc) Result {
	res := Result{At: ts, Recovered: true}
	for _, d := range v.defs {
		if wait := since.Add(d.Window).Sub(ts); wait > 0 {
			res.Recovered = false
			res.Checks = append(res.Checks, Check{Trigger: d.Name,
				Why: fmt.Sprintf("waiting %s for a full %s window of data after the rollback", wait.Round(time.Second), d.Window)})
			continue
		}
		c := v.check(ctx, ts, d, service, running, references, q)
		res.Recovered = res.Recovered && c.Recovered
		res.Checks = append(res.Checks, c)
	}
	if !res.Recovered {
		return res
	}
	for _, s := range v.opts.Smoke {
		sr := v.smoke(ctx, s)
		res.Recovered = res.Recovered && sr.OK
		res.Smoke = append(res.Smoke, sr)
	}
	return res
}

func (v *Verifier) check(ctx context.Context, ts time.Time, d trigger.Definition, service, running string, references map[string]float64, q trigger.QueryFunc) Check {
	vars := query.Vars{Service: service, Version: running, Window: d.Window}
	c := Check{Trigger: d.Name}
	if ref, ok := references[d.Name]; ok && !math.IsNaN(ref) {
		c.Reference = &ref
	}
	if d.VolumeQuery != nil && d.MinRequests > 0 {
		vq, err := d.VolumeQuery.Render(vars)
		if err != nil {
			c.Why = err.Error()
			return c
		}
		n, ok, err := source.Single(ctx, source.QueryFunc(q), vq, ts)
		switch {
		case err != nil:
			c.Why = "volume query failed: " + err.Error()
			return c
		case !ok || n < d.MinRequests:
			c.Why = fmt.Sprintf("not enough traffic yet (%s < %s requests)", fmtOpt(n, ok), fmtNum(d.MinRequests))
			return c
		}
	}
	qs, err := d.Query.Render(vars)
	if err != nil {
		c.Why = err.Error()
		return c
	}
	c.Query = qs
	x, ok, err := source.Single(ctx, source.QueryFunc(q), qs, ts)
	switch {
	case err != nil:
		c.Why = "query failed: " + err.Error()
		return c
	case !ok || math.IsNaN(x):
		c.Why = "no data for " + running
		return c
	}
	c.Value = &x

	var reasons []string
	if c.Reference != nil {
		ref := *c.Reference
		limit := ref * (1 + v.opts.Tolerance)
		if d.Below != nil && d.Above == nil && d.AboveBaseline == nil {
			limit = ref * (1 - v.opts.Tolerance)
			if x >= limit {
				c.Recovered = true
				reasons = append(reasons, fmt.Sprintf("%s ≥ baseline %s - %s%%", fmtNum(x), fmtNum(ref), fmtNum(v.opts.Tolerance*100)))
			}
		} else if x <= limit {
			c.Recovered = true
			reasons = append(reasons, fmt.Sprintf("%s within %s%% of baseline %s", fmtNum(x), fmtNum(v.opts.Tolerance*100), fmtNum(ref)))
		}
	}
	if !c.Recovered && (d.Above != nil || d.Below != nil) {
		under := (d.Above == nil || x <= *d.Above) && (d.Below == nil || x >= *d.Below)
		if under {
			c.Recovered = true
			reasons = append(reasons, fmt.Sprintf("%s within the absolute thresholds%s", fmtNum(x), thresholds(d)))
		}
	}
	if !c.Recovered {
		ref := "unknown"
		if c.Reference != nil {
			ref = fmtNum(*c.Reference)
		}
		reasons = append(reasons, fmt.Sprintf("%s not back: baseline %s%s", fmtNum(x), ref, thresholds(d)))
	}
	c.Why = strings.Join(reasons, "; ")
	return c
}

func thresholds(d trigger.Definition) string {
	var b strings.Builder
	if d.Above != nil {
		fmt.Fprintf(&b, ", above %s", fmtNum(*d.Above))
	}
	if d.Below != nil {
		fmt.Fprintf(&b, ", below %s", fmtNum(*d.Below))
	}
	return b.String()
}

// maxBody bounds the body read by a smoke check.
const maxBody = 1 << 20

func (v *Verifier) smoke(ctx context.Context, s Smoke) SmokeResult {
	r := SmokeResult{Name: s.Name}
	if r.Name == "" {
		r.Name = s.URL
	}
	method, want, timeout := s.Method, s.ExpectStatus, s.Timeout
	if method == "" {
		method = http.MethodGet
	}
	if want == 0 {
		want = http.StatusOK
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL, nil)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	req.Header.Set("User-Agent", "Guardian smoke check")
	resp, err := v.opts.Client.Do(req)
	if err != nil {
		r.Detail = err.Error()
		return r
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		r.Detail = fmt.Sprintf("reading body: %v", err)
		return r
	}
	switch {
	case resp.StatusCode != want:
		r.Detail = fmt.Sprintf("status %d, want %d", resp.StatusCode, want)
	case s.BodyContains != "" && !strings.Contains(string(body), s.BodyContains):
		r.Detail = fmt.Sprintf("status %d but the body lacks %q", resp.StatusCode, s.BodyContains)
	default:
		r.OK = true
		r.Detail = fmt.Sprintf("status %d", resp.StatusCode)
	}
	return r
}

func fmtNum(f float64) string { return fmt.Sprintf("%.4g", f) }

func fmtOpt(f float64, ok bool) string {
	if !ok {
		return "no data"
	}
	return fmtNum(f)
}
