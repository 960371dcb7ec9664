// Package alertmanager is the Prometheus Alertmanager receiver: every open
// incident is a firing alert, posted to the Alertmanager API v2
// (POST <url>/api/v2/alerts, a JSON array of alerts) of every configured
// URL, so that Alertmanager's routing, grouping, inhibition and silences
// apply to Guardian's incidents as to any other alert.
//
// The alert of incident 42 is identified by its labels, which stay the same
// for the incident's whole life:
//
//	alertname="GuardianIncident", service="checkout", version="v2.4.1",
//	baseline="v2.4.0", severity="SEV-1", incident="42"
//
// Nothing that changes goes into a label (Alertmanager would see a new alert
// at each change): the state, the latest message, the evidence, the proposed
// action, the links back to Guardian and the responders are annotations
// (summary, description, state, evidence, proposed_action, incident_url,
// report_url, status_url, responders), and generatorURL is the incident's
// link. startsAt is the time the incident was declared.
//
// Alertmanager resolves an alert whose endsAt passes. A firing alert's endsAt
// is four resend intervals ahead, as Prometheus sets it, and Run re-posts
// the alerts of all open incidents every resend interval (the app runs it
// on the replica that acts, and hands it the open incidents from the
// incident store, so re-posting survives a restart of Guardian and brings
// back an alert that a restarted Alertmanager lost). When the incident ends
// (resolved, or closed without resolution; held, escalated and failed
// incidents stay open until a person closes them), the alert is posted once
// more with endsAt set to the time it ended: resolved.
//
// An HA pair (or more) is configured as several URLs, and every post goes to
// each of them, as Alertmanager's documentation asks of its clients; the
// members deduplicate by labels. A post succeeds when every URL accepted it.
// When any URL failed for a reason worth retrying (a network error, a
// timeout, 408, 429 or 5xx), Notify reports retry, and the outbox posts
// again to all of them (harmless: the ones that accepted merge the same
// alert); when every failure is a rejection (another 4xx) it is permanent.
//
// Events about a metric source (source.unreachable, source.recovered) are
// bound to no incident and are not posted: Prometheus alerts on its own
// targets.
//
// Errors and logs show each URL without its user info and query.
package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/internal/httpx"
	"github.com/rollback-guardian/guardian/notify/tmpl"
)

// AlertName is the alertname label of every incident's alert.
const AlertName = "GuardianIncident"

// Labels of an incident's alert, besides alertname. They never change while
// the incident lives.
const (
	LabelService  = "service"
	LabelVersion  = "version"
	LabelBaseline = "baseline"
	LabelSeverity = "severity"
	LabelIncident = "incident"
)

// APIPath is where alerts are posted, under each configured URL.
const APIPath = "/api/v2/alerts"

// UserAgent is sent with every request.
const UserAgent = "Guardian"

// DefaultTimeout bounds one post when the configuration gives none.
const DefaultTimeout = 10 * time.Second

// resendFactor times the resend interval is how far ahead a firing alert
// ends, as Prometheus sets it: a few missed re-posts do not resolve it.
const resendFactor = 4

// keepEnded is how long an ended incident is remembered (its end time,
// for the events that follow the end, such as report.written).
const keepEnded = 24 * time.Hour

// maxErrorBody is how much of an error answer is quoted in the error.
const maxErrorBody = 256

// Default templates: the alert's summary (Title) and description (Text).
// They run on the notify.Event, whose Data also holds proposed_action.
const (
	DefaultTitle = `{{.Service}}: roll back {{.Data.version}} → {{.Data.baseline}} ({{.Severity}}, incident #{{.Incident}}, {{.State}})`
	DefaultText  = `{{.Text}}
{{- with .Data.evidence}}
Evidence: {{.}}{{end}}
{{- with .Data.proposed_action}}
Proposed action: {{.}}{{end}}`
)

// Alert is an alert as the Alertmanager API v2 takes it (postableAlert).
type Alert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// target is one Alertmanager.
type target struct {
	url      string // the alerts endpoint
	redacted string // the base URL without user info and query, for logs and errors
}

// Notifier posts incidents as alerts to one or more Alertmanagers.
type Notifier struct {
	targets     []target
	resend      time.Duration
	timeout     time.Duration
	client      *http.Client
	title, text *template.Template
	now         func() time.Time
	log         *zap.Logger

	mu        sync.Mutex
	incidents map[int64]*tracked
}

// tracked is what the notifier remembers of an incident.
type tracked struct {
	start time.Time    // startsAt: when it was declared, or first seen
	last  notify.Event // the latest event, by sequence
	end   time.Time    // when it ended; zero while open
}

var (
	_ notify.Notifier = (*Notifier)(nil)
	_ notify.Runner   = (*Notifier)(nil)
)

// Option changes a Notifier's defaults.
type Option func(*Notifier)

// WithClient sends through c instead of the client built from the
// configuration's HTTP settings (for tests).
func WithClient(c *http.Client) Option { return func(n *Notifier) { n.client = c } }

// WithNow sets the clock giving a firing alert's endsAt.
func WithNow(now func() time.Time) Option { return func(n *Notifier) { n.now = now } }

// New returns a notifier for the configured Alertmanagers.
func New(cfg config.AlertmanagerNotifier, logger *zap.Logger, opts ...Option) (*Notifier, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("alertmanager: no URL")
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	n := &Notifier{
		resend:    time.Duration(cfg.ResendInterval),
		timeout:   time.Duration(cfg.Timeout),
		now:       time.Now,
		incidents: map[int64]*tracked{},
	}
	if n.resend <= 0 {
		n.resend = time.Duration(config.DefaultAlertmanagerResend)
	}
	if n.timeout <= 0 {
		n.timeout = DefaultTimeout
	}
	var names []string
	for _, s := range cfg.URLs {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("alertmanager URL: %w", unquote(err))
		}
		r := redact(u)
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("alertmanager URL %s: want an absolute http or https URL", r)
		}
		u.RawQuery, u.Fragment = "", ""
		n.targets = append(n.targets, target{url: u.JoinPath(APIPath).String(), redacted: r})
		names = append(names, r)
	}
	var err error
	if n.title, err = parse("title", cfg.Templates.Title, DefaultTitle); err != nil {
		return nil, err
	}
	if n.text, err = parse("text", cfg.Templates.Text, DefaultText); err != nil {
		return nil, err
	}
	n.log = logger.With(zap.Strings("alertmanagers", names))
	for _, o := range opts {
		o(n)
	}
	if n.client == nil {
		hc, err := commoncfg.NewClientFromConfig(cfg.HTTPClientConfig, "guardian_alertmanager")
		if err != nil {
			return nil, fmt.Errorf("alertmanager HTTP client: %w", err)
		}
		n.client = hc
	}
	return n, nil
}

func parse(name, text, def string) (*template.Template, error) {
	if text == "" {
		return tmpl.Must(name, def), nil
	}
	t, err := tmpl.Parse(name, text)
	if err != nil {
		return nil, fmt.Errorf("alertmanager templates.%s: %w", name, err)
	}
	return t, nil
}

// ResendInterval is how often Run re-posts the open incidents' alerts.
func (n *Notifier) ResendInterval() time.Duration { return n.resend }

// Notify posts the alert of e's incident to every Alertmanager: firing
// while the incident is open, resolved at e's time when e ends it.
func (n *Notifier) Notify(ctx context.Context, e notify.Event) (bool, error) {
	if e.Incident <= 0 {
		n.log.Debug("Event bound to no incident: not posted", zap.String("event", e.ID), zap.Stringer("type", e.Type))
		return false, nil
	}
	now := n.now()
	n.mu.Lock()
	tr := n.trackLocked(e)
	a, err := n.alert(tr, now)
	resolved := !tr.end.IsZero()
	n.pruneLocked(now)
	n.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("alert of event %s: %w", e.ID, err)
	}
	retry, err := n.post(ctx, []Alert{a})
	if err != nil {
		return retry, fmt.Errorf("posting the alert of event %s: %w", e.ID, err)
	}
	n.log.Debug("Alert posted", zap.String("event", e.ID), zap.Bool("resolved", resolved))
	return false, nil
}

// trackLocked remembers e and returns its incident's record.
func (n *Notifier) trackLocked(e notify.Event) *tracked {
	tr, ok := n.incidents[e.Incident]
	if !ok {
		tr = &tracked{start: e.Time, last: e}
		n.incidents[e.Incident] = tr
	}
	if e.Type == event.IncidentDeclared || e.Time.Before(tr.start) {
		tr.start = e.Time
	}
	if e.Sequence >= tr.last.Sequence {
		tr.last = e
	}
	if ended(e.State) && tr.end.IsZero() {
		tr.end = e.Time
	}
	return tr
}

// pruneLocked forgets the incidents that ended long ago.
func (n *Notifier) pruneLocked(now time.Time) {
	for id, tr := range n.incidents {
		if !tr.end.IsZero() && now.Sub(tr.end) > keepEnded {
			delete(n.incidents, id)
		}
	}
}

// ended reports whether an incident in state s is over: resolved, or
// closed without resolution.
func ended(s string) bool { return s != "" && !incident.State(s).Open() }

// Run re-posts the firing alerts of the open incidents every resend
// interval, from its start until ctx ends. open, when not nil, returns the
// events of every open incident routed to this receiver (at least the
// first, whose time is the alert's startsAt, and the latest); the
// incidents it does not list are not re-posted. Without it, Run re-posts
// the incidents Notify saw and that have not ended. Failures are logged;
// the next interval tries again.
func (n *Notifier) Run(ctx context.Context, open notify.OpenFunc) {
	t := time.NewTicker(n.resend)
	defer t.Stop()
	for {
		n.Repost(ctx, open)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Repost posts once the firing alerts of the open incidents (see Run).
func (n *Notifier) Repost(ctx context.Context, open notify.OpenFunc) {
	var (
		listed map[int64]bool
		evs    []notify.Event
	)
	if open != nil {
		var err error
		if evs, err = open(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			n.log.Warn("Listing the open incidents failed: re-posting those known", zap.Error(err))
		} else {
			listed = map[int64]bool{}
		}
	}
	now := n.now()
	n.mu.Lock()
	for _, e := range evs {
		if e.Incident > 0 {
			n.trackLocked(e)
			listed[e.Incident] = true
		}
	}
	var alerts []Alert
	for _, id := range slices.Sorted(maps.Keys(n.incidents)) {
		tr := n.incidents[id]
		if !tr.end.IsZero() || listed != nil && !listed[id] {
			continue
		}
		a, err := n.alert(tr, now)
		if err != nil {
			n.log.Warn("Alert not re-posted", zap.Int64("incident", id), zap.Error(err))
			continue
		}
		alerts = append(alerts, a)
	}
	n.pruneLocked(now)
	n.mu.Unlock()
	if len(alerts) == 0 {
		return
	}
	if _, err := n.post(ctx, alerts); err != nil {
		if ctx.Err() == nil {
			n.log.Warn("Re-posting the open incidents' alerts failed", zap.Int("alerts", len(alerts)), zap.Error(err))
		}
		return
	}
	n.log.Debug("Open incidents' alerts re-posted", zap.Int("alerts", len(alerts)))
}

// alert is the alert of tr's incident at now.
func (n *Notifier) alert(tr *tracked, now time.Time) (Alert, error) {
	a, err := Render(tr.last, n.title, n.text)
	if err != nil {
		// A configured template that fails on this event must not cost
		// the alert: the defaults render it.
		n.log.Warn("a notification template failed; using the default", zap.String("event", tr.last.ID), zap.Error(err))
		if a, err = Render(tr.last, nil, nil); err != nil {
			return Alert{}, err
		}
	}
	a.StartsAt = tr.start.UTC()
	if tr.end.IsZero() {
		a.EndsAt = now.Add(resendFactor * n.resend).UTC()
	} else {
		a.EndsAt = tr.end.UTC()
		if a.EndsAt.Before(a.StartsAt) {
			a.StartsAt = a.EndsAt
		}
	}
	return a, nil
}

// Render builds the labels, annotations and generatorURL of e's incident's
// alert with the title and text templates (nil: the defaults); the times
// are left to the caller.
func Render(e notify.Event, title, text *template.Template) (Alert, error) {
	if title == nil {
		title = tmpl.Must("title", DefaultTitle)
	}
	if text == nil {
		text = tmpl.Must("text", DefaultText)
	}
	version, baseline := str(e.Data["version"]), str(e.Data["baseline"])
	a := Alert{
		Labels:      map[string]string{"alertname": AlertName, LabelIncident: strconv.FormatInt(e.Incident, 10)},
		Annotations: map[string]string{},
	}
	for k, v := range map[string]string{LabelService: e.Service, LabelVersion: version, LabelBaseline: baseline, LabelSeverity: e.Severity} {
		if v != "" { // Alertmanager drops empty labels
			a.Labels[k] = v
		}
	}
	action := proposedAction(e, version, baseline)
	data := maps.Clone(e.Data)
	if data == nil {
		data = map[string]any{}
	}
	if action != "" {
		data["proposed_action"] = action
	}
	te := e
	te.Data = data
	var err error
	annotate := func(k, v string) {
		if v != "" {
			a.Annotations[k] = v
		}
	}
	var s string
	if s, err = tmpl.Execute(title, te); err != nil {
		return Alert{}, err
	}
	annotate("summary", s)
	if s, err = tmpl.Execute(text, te); err != nil {
		return Alert{}, err
	}
	annotate("description", s)
	annotate("state", e.State)
	annotate("evidence", str(e.Data["evidence"]))
	annotate("proposed_action", action)
	annotate("incident_url", e.Links.Incident)
	annotate("report_url", e.Links.Report)
	annotate("status_url", e.Links.Status)
	var rs []string
	for _, r := range e.Responders {
		rs = append(rs, r.Role+": "+r.Name)
	}
	annotate("responders", strings.Join(rs, "; "))
	a.GeneratorURL = e.Links.Incident
	return a, nil
}

// proposedAction is what a person should do now, by the incident's state.
func proposedAction(e notify.Event, version, baseline string) string {
	id := e.Incident
	switch incident.State(e.State) {
	case incident.Detected, incident.AwaitingApproval:
		return fmt.Sprintf("roll back %s %s → %s: give the go with `guardian approve %d`, or the no-go with `guardian deny %d --reason ...`",
			e.Service, version, baseline, id, id)
	case incident.DBAwaitingApproval:
		return fmt.Sprintf("the application rollback alone did not restore %s: give the go for the database step with `guardian approve %d` (high-risk, never automatic), or the no-go with `guardian deny %d --reason ...`",
			e.Service, id, id)
	case incident.RollingBack, incident.DBRollingBack:
		return fmt.Sprintf("none: Guardian is rolling %s back to %s", e.Service, baseline)
	case incident.Verifying:
		return fmt.Sprintf("none: Guardian is verifying that %s recovers on %s", e.Service, baseline)
	case incident.Held:
		return fmt.Sprintf("held on %s by a no-go: fix forward or roll back by hand, then `guardian close %d --reason ...`", version, id)
	case incident.Escalated, incident.Failed:
		return fmt.Sprintf("Guardian can do no more: take over %s by hand, then `guardian close %d --reason ...`", e.Service, id)
	}
	return ""
}

func str(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// post sends alerts to every Alertmanager at once. It reports retry when
// any of them failed for a reason worth retrying.
func (n *Notifier) post(ctx context.Context, alerts []Alert) (bool, error) {
	body, err := json.Marshal(alerts)
	if err != nil {
		return false, fmt.Errorf("encoding alerts: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	type result struct {
		retry bool
		err   error
	}
	results := make([]result, len(n.targets))
	var wg sync.WaitGroup
	for i, t := range n.targets {
		wg.Go(func() {
			r, err := n.postOne(ctx, t, body)
			results[i] = result{r, err}
		})
	}
	wg.Wait()
	var pe PostError
	retry := false
	for _, r := range results {
		if r.err == nil {
			continue
		}
		pe.Errs = append(pe.Errs, r.err)
		retry = retry || r.retry
		var se *StatusError
		if errors.As(r.err, &se) {
			pe.Wait = max(pe.Wait, se.Wait)
		}
	}
	if len(pe.Errs) == 0 {
		return false, nil
	}
	return retry, &pe
}

func (n *Notifier) postOne(ctx context.Context, t target, body []byte) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("alertmanager %s: %w", t.redacted, unquote(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	resp, err := n.client.Do(req)
	if err != nil {
		return true, fmt.Errorf("alertmanager %s: %w", t.redacted, unquote(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // for connection reuse
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return false, nil
	}
	retry, se := httpx.Answer(resp, httpx.Clean(snippet), n.now())
	return retry, fmt.Errorf("alertmanager %s: %w", t.redacted, se)
}

// PostError is a post that failed on one or more of the Alertmanagers.
type PostError struct {
	// Errs are the failures, one per Alertmanager that failed.
	Errs []error
	// Wait is the longest Retry-After among them.
	Wait time.Duration
}

var _ notify.RetryAfterError = (*PostError)(nil)

func (e *PostError) Error() string {
	s := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

// Unwrap returns the failures.
func (e *PostError) Unwrap() []error { return e.Errs }

// RetryAfter is the longest wait an Alertmanager asked for.
func (e *PostError) RetryAfter() time.Duration { return e.Wait }

// StatusError is a non-2xx answer, with the start of the answer.
type StatusError = httpx.StatusError

// redact drops a URL's user info and query, which may hold credentials;
// scheme, host and path (an Alertmanager behind a path prefix) stay.
func redact(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.Fragment = nil, "", ""
	return c.String()
}

// unquote drops the URL a *url.Error quotes, keeping its cause.
func unquote(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}
