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
	// Waiting: the check could not judge yet (too little traffic, no data,
	// not a whole window since the rollback); otherwise a check that did
	// not recover is evidence that the service is still bad.
	Waiting bool   `json:"waiting,omitempty"`
	Why     string `json:"why"`
	// status is Why without its figures: what the check is at.
	status string
}

// SmokeResult is one smoke check's outcome.
type SmokeResult struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Result is one probe.
type Result struct {
	At time.Time `json:"at"`
	// Running is the version judged: what serves now.
	Running   string `json:"running"`
	Recovered bool   `json:"recovered"`
	// Bad: the evidence says the service is not back (a check with enough
	// data not back, a smoke check failing, the bad version still
	// serving). A result neither Recovered nor Bad is still waiting for
	// evidence.
	Bad    bool          `json:"bad,omitempty"`
	Checks []Check       `json:"checks"`
	Smoke  []SmokeResult `json:"smoke,omitempty"`
	// Status says what the probe is at, in words without figures: the
	// same Status on two probes means nothing changed but the numbers.
	Status string `json:"status"`
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

// SmokePassed reports whether smoke checks ran and all passed.
func (r Result) SmokePassed() bool {
	if len(r.Smoke) == 0 {
		return false
	}
	for _, s := range r.Smoke {
		if !s.OK {
			return false
		}
	}
	return true
}

// Target is what a probe judges.
type Target struct {
	Service string
	// Bad is the version rolled back from; Baseline the version rolled
	// back to.
	Bad, Baseline string
	// Serving are the versions serving now, most traffic first, as deploy
	// detection sees them; nil when it cannot tell. The version judged is
	// the first that is not Bad, or Baseline without any.
	Serving []string
	// References are the baseline's values by trigger name, from before the
	// deploy.
	References map[string]float64
	// Since is when the rollback finished.
	Since time.Time
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

// Probe judges, once at ts, the version that runs now (see Target) against
// the references, then runs the smoke checks unless a trigger already shows
// the service still bad (a broken service is not hammered). A trigger is
// not judged before a whole window of data from after the rollback exists,
// so values from before the incident cannot pass for a recovery; when its
// window holds less traffic than its min_requests, it is judged over
// everything since the rollback, so that a service with little traffic
// recovers as soon as enough requests came. The bad version still serving
// is not a recovery.
func (v *Verifier) Probe(ctx context.Context, ts time.Time, t Target, q trigger.QueryFunc) Result {
	res := Result{At: ts, Running: t.Baseline, Recovered: true}
	var statuses []string
	chosen := false
	for _, s := range t.Serving {
		switch {
		case s == t.Bad:
			res.Recovered, res.Bad = false, true
			res.Checks = append(res.Checks, Check{Trigger: "rollback", Why: fmt.Sprintf("%s still serves", t.Bad), status: "still serving"})
			statuses = append(statuses, t.Bad+" still serving")
		case !chosen:
			res.Running, chosen = s, true // the most traffic
		}
	}
	for _, d := range v.defs {
		if wait := t.Since.Add(d.Window).Sub(ts); wait > 0 {
			res.Recovered = false
			res.Checks = append(res.Checks, Check{Trigger: d.Name, Waiting: true, status: "waiting for a full window",
				Why: fmt.Sprintf("waiting %s for a full %s window of data after the rollback", wait.Round(time.Second), d.Window)})
			statuses = append(statuses, d.Name+": waiting for a full window")
			continue
		}
		c := v.check(ctx, ts, d, t, res.Running, q)
		res.Recovered = res.Recovered && c.Recovered
		res.Bad = res.Bad || (!c.Recovered && !c.Waiting)
		res.Checks = append(res.Checks, c)
		statuses = append(statuses, d.Name+": "+c.status)
	}
	if !res.Bad {
		for _, s := range v.opts.Smoke {
			sr := v.smoke(ctx, s)
			res.Recovered = res.Recovered && sr.OK
			res.Bad = res.Bad || !sr.OK
			res.Smoke = append(res.Smoke, sr)
			if !sr.OK {
				statuses = append(statuses, "smoke "+sr.Name+" failing")
			}
		}
	}
	switch {
	case res.Recovered:
		res.Status = "recovered on " + res.Running
	default:
		res.Status = strings.Join(statuses, "; ")
	}
	return res
}

func (v *Verifier) check(ctx context.Context, ts time.Time, d trigger.Definition, t Target, running string, q trigger.QueryFunc) Check {
	vars := query.Vars{Service: t.Service, Version: running, Window: d.Window}
	c := Check{Trigger: d.Name}
	if ref, ok := t.References[d.Name]; ok && !math.IsNaN(ref) {
		c.Reference = &ref
	}
	waiting := func(status, why string) Check {
		c.Waiting, c.status, c.Why = true, status, why
		return c
	}
	if d.VolumeQuery != nil && d.MinRequests > 0 {
		n, ok, err := v.volume(ctx, ts, d, vars, q)
		if err != nil {
			return waiting("volume query failing", "volume query failed: "+err.Error())
		}
		if !ok || n < d.MinRequests {
			// Too little traffic in the window: judge over everything
			// since the rollback.
			since := ts.Sub(t.Since).Truncate(time.Second)
			if since > d.Window {
				wide := vars
				wide.Window = since
				if n2, ok2, err := v.volume(ctx, ts, d, wide, q); err == nil && ok2 && n2 >= d.MinRequests {
					vars, n, ok = wide, n2, true
				} else if err == nil && ok2 {
					n, ok = n2, true
				}
			}
			if !ok || n < d.MinRequests {
				return waiting("waiting for traffic", fmt.Sprintf("waiting for traffic: %s of %s requests since the rollback",
					fmtOpt(n, ok), fmtNum(d.MinRequests)))
			}
		}
	}
	qs, err := d.Query.Render(vars)
	if err != nil {
		return waiting("query failing", err.Error())
	}
	c.Query = qs
	x, ok, err := source.Single(ctx, source.QueryFunc(q), qs, ts)
	switch {
	case err != nil:
		return waiting("query failing", "query failed: "+err.Error())
	case !ok || math.IsNaN(x):
		return waiting("no data", "no data for "+running)
	}
	c.Value = &x

	var reasons []string
	tol := fmtNum(v.opts.Tolerance*100) + "%"
	belowType := d.Below != nil && d.Above == nil && d.AboveBaseline == nil
	if c.Reference != nil {
		ref := *c.Reference
		if belowType {
			if x >= ref*(1-v.opts.Tolerance) {
				c.Recovered = true
				reasons = append(reasons, fmt.Sprintf("%s is at most %s under the baseline's %s", fmtNum(x), tol, fmtNum(ref)))
			}
		} else if x <= ref*(1+v.opts.Tolerance) {
			c.Recovered = true
			reasons = append(reasons, fmt.Sprintf("%s is within %s of the baseline's %s", fmtNum(x), tol, fmtNum(ref)))
		}
	}
	if !c.Recovered && (d.Above != nil || d.Below != nil) {
		if (d.Above == nil || x <= *d.Above) && (d.Below == nil || x >= *d.Below) {
			c.Recovered = true
			reasons = append(reasons, fmtNum(x)+" "+insideThresholds(d, x))
		}
	}
	c.status = "back"
	if !c.Recovered {
		var why []string
		switch {
		case c.Reference != nil && belowType:
			why = append(why, fmt.Sprintf("more than %s under the baseline's %s", tol, fmtNum(*c.Reference)))
		case c.Reference != nil:
			why = append(why, fmt.Sprintf("more than %s over the baseline's %s", tol, fmtNum(*c.Reference)))
		default:
			why = append(why, "no baseline value to compare with")
		}
		if t := outsideThresholds(d, x); t != "" {
			why = append(why, t)
		}
		reasons = append(reasons, fmt.Sprintf("%s is not back: %s", fmtNum(x), strings.Join(why, ", and ")))
		c.status = "not back"
	}
	if vars.Window != d.Window {
		reasons = append(reasons, fmt.Sprintf("over the %s since the rollback", vars.Window))
	}
	c.Why = strings.Join(reasons, "; ")
	return c
}

// volume is the traffic of d's volume query with vars.
func (v *Verifier) volume(ctx context.Context, ts time.Time, d trigger.Definition, vars query.Vars, q trigger.QueryFunc) (float64, bool, error) {
	vq, err := d.VolumeQuery.Render(vars)
	if err != nil {
		return 0, false, err
	}
	n, ok, err := source.Single(ctx, source.QueryFunc(q), vq, ts)
	if ok && math.IsNaN(n) {
		return 0, false, err
	}
	return n, ok, err
}

// insideThresholds says how x, which breaches none of d's absolute
// thresholds, stands to them: "is below the trigger's 0.05".
func insideThresholds(d trigger.Definition, x float64) string {
	switch {
	case d.Above != nil && d.Below != nil:
		return fmt.Sprintf("is between the trigger's %s and %s", fmtNum(*d.Below), fmtNum(*d.Above))
	case d.Above != nil && x == *d.Above:
		return fmt.Sprintf("is at the trigger's %s, not above it", fmtNum(*d.Above))
	case d.Above != nil:
		return fmt.Sprintf("is below the trigger's %s", fmtNum(*d.Above))
	case x == *d.Below:
		return fmt.Sprintf("is at the trigger's %s, not below it", fmtNum(*d.Below))
	default:
		return fmt.Sprintf("is above the trigger's %s", fmtNum(*d.Below))
	}
}

// outsideThresholds names the absolute threshold x breaches: "above the
// trigger's 0.05"; "" when it breaches none.
func outsideThresholds(d trigger.Definition, x float64) string {
	switch {
	case d.Above != nil && x > *d.Above:
		return "above the trigger's " + fmtNum(*d.Above)
	case d.Below != nil && x < *d.Below:
		return "below the trigger's " + fmtNum(*d.Below)
	}
	return ""
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
