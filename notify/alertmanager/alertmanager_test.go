package alertmanager_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/alertmanager"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	declaredAt = time.Date(2025, 3, 4, 5, 6, 0, 0, time.UTC)
	sendTime   = time.Date(2025, 3, 4, 5, 10, 0, 0, time.UTC)
)

const resend = time.Minute

// ev is an event of incident 42 of checkout.
func ev(seq int, typ event.Type, state string, at time.Time) notify.Event {
	return notify.Event{
		ID: "evt_42_" + string(rune('0'+seq)), Type: typ, Sequence: seq, Time: at, Incident: 42,
		Service: "checkout", Severity: "SEV-1", State: state,
		Text: "SEV-1 declared for checkout: checkout v2.4.1 is bad (5xx 7.9% > 5%)",
		Data: map[string]any{"version": "v2.4.1", "baseline": "v2.4.0", "trigger": "error_rate",
			"evidence": "5xx ratio 7.9% > 5% (baseline 0.4%)", "actor": "guardian"},
		Links:      notify.LinksFor("https://guardian.example.com", 42),
		Responders: []notify.Responder{{Role: "incident_commander", Name: "Ana"}, {Role: "on_call", Name: "Bo"}},
	}
}

// request is one post an Alertmanager stand-in got.
type request struct {
	method, path, contentType string
	alerts                    []alertmanager.Alert
	raw                       []byte
}

// am is an Alertmanager stand-in answering with codes in turn (the last
// repeats).
type am struct {
	mu    sync.Mutex
	codes []int
	retry string // Retry-After of error answers
	got   []request
	srv   *httptest.Server
}

func newAM(t *testing.T, codes ...int) *am {
	if len(codes) == 0 {
		codes = []int{http.StatusOK}
	}
	a := &am{codes: codes}
	a.srv = httptest.NewServer(a)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *am) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var alerts []alertmanager.Alert
	_ = json.Unmarshal(body, &alerts)
	a.mu.Lock()
	a.got = append(a.got, request{r.Method, r.URL.Path, r.Header.Get("Content-Type"), alerts, body})
	code := a.codes[min(len(a.got), len(a.codes))-1]
	retry := a.retry
	a.mu.Unlock()
	if code != http.StatusOK && retry != "" {
		w.Header().Set("Retry-After", retry)
	}
	w.WriteHeader(code)
	_, _ = io.WriteString(w, "answer\nfor "+http.StatusText(code))
}

func (a *am) requests() []request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.got)
}

func newNotifier(t *testing.T, cfg config.AlertmanagerNotifier, log *zap.Logger, opts ...alertmanager.Option) *alertmanager.Notifier {
	t.Helper()
	if cfg.ResendInterval == 0 {
		cfg.ResendInterval = config.Duration(resend)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = config.Duration(5 * time.Second)
	}
	opts = append([]alertmanager.Option{alertmanager.WithNow(func() time.Time { return sendTime })}, opts...)
	n, err := alertmanager.New(cfg, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFiringAlertShape: a declared incident is one firing alert, posted to
// /api/v2/alerts of both members of an HA pair as a JSON array, with the
// stable labels, the annotations and links, startsAt the declare time and
// endsAt four resend intervals ahead.
func TestFiringAlertShape(t *testing.T) {
	a, b := newAM(t), newAM(t)
	n := newNotifier(t, config.AlertmanagerNotifier{URLs: []string{a.srv.URL, b.srv.URL + "/prefix/"}}, nil)
	retry, err := n.Notify(context.Background(), ev(1, event.IncidentDeclared, "detected", declaredAt))
	if err != nil || retry {
		t.Fatalf("Notify = %v, %v", retry, err)
	}
	for i, srv := range []*am{a, b} {
		reqs := srv.requests()
		if len(reqs) != 1 {
			t.Fatalf("alertmanager %d got %d requests, want 1", i, len(reqs))
		}
		r := reqs[0]
		wantPath := "/api/v2/alerts"
		if i == 1 {
			wantPath = "/prefix/api/v2/alerts"
		}
		if r.method != http.MethodPost || r.path != wantPath || r.contentType != "application/json" {
			t.Errorf("alertmanager %d: %s %s (%s), want POST %s (application/json)", i, r.method, r.path, r.contentType, wantPath)
		}
		if !strings.HasPrefix(string(r.raw), "[") || len(r.alerts) != 1 {
			t.Fatalf("alertmanager %d: body %s, want a JSON array of one alert", i, r.raw)
		}
		al := r.alerts[0]
		wantLabels := map[string]string{"alertname": "GuardianIncident", "service": "checkout", "version": "v2.4.1",
			"baseline": "v2.4.0", "severity": "SEV-1", "incident": "42"}
		if !equalMaps(al.Labels, wantLabels) {
			t.Errorf("labels = %v, want %v", al.Labels, wantLabels)
		}
		if !al.StartsAt.Equal(declaredAt) || !al.EndsAt.Equal(sendTime.Add(4*resend)) {
			t.Errorf("startsAt, endsAt = %s, %s; want %s, %s", al.StartsAt, al.EndsAt, declaredAt, sendTime.Add(4*resend))
		}
		if al.GeneratorURL != "https://guardian.example.com/incidents/42" {
			t.Errorf("generatorURL = %q", al.GeneratorURL)
		}
		for k, want := range map[string]string{
			"summary":      "checkout: roll back v2.4.1 → v2.4.0 (SEV-1, incident #42, detected)",
			"evidence":     "5xx ratio 7.9% > 5% (baseline 0.4%)",
			"incident_url": "https://guardian.example.com/incidents/42",
			"report_url":   "https://guardian.example.com/api/v1/incidents/42/report?format=html",
			"status_url":   "https://guardian.example.com/",
			"responders":   "incident_commander: Ana; on_call: Bo",
			"state":        "detected",
		} {
			if got := al.Annotations[k]; got != want {
				t.Errorf("annotation %s = %q, want %q", k, got, want)
			}
		}
		if pa := al.Annotations["proposed_action"]; !strings.Contains(pa, "guardian approve 42") {
			t.Errorf("proposed_action = %q, want the approve command", pa)
		}
		d := al.Annotations["description"]
		for _, want := range []string{"checkout v2.4.1 is bad", "Evidence: 5xx ratio", "Proposed action: roll back checkout v2.4.1 → v2.4.0"} {
			if !strings.Contains(d, want) {
				t.Errorf("description %q lacks %q", d, want)
			}
		}
	}
}

// TestLinksOnlyWhenSet: without an external URL there are no link
// annotations and no generatorURL.
func TestLinksOnlyWhenSet(t *testing.T) {
	a := newAM(t)
	n := newNotifier(t, config.AlertmanagerNotifier{URLs: []string{a.srv.URL}}, nil)
	e := ev(1, event.IncidentDeclared, "detected", declaredAt)
	e.Links, e.Responders = notify.Links{}, nil
	if _, err := n.Notify(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	al := a.requests()[0].alerts[0]
	for _, k := range []string{"incident_url", "report_url", "status_url", "responders"} {
		if v, ok := al.Annotations[k]; ok {
			t.Errorf("annotation %s = %q, want none", k, v)
		}
	}
	if al.GeneratorURL != "" {
		t.Errorf("generatorURL = %q, want none", al.GeneratorURL)
	}
}

// TestLifecycle: the labels and startsAt stay the same through the
// incident's life while the annotations follow its state; the event that
// ends it resolves the alert at its time, and the events after the end
// keep that end.
func TestLifecycle(t *testing.T) {
	a := newAM(t)
	n := newNotifier(t, config.AlertmanagerNotifier{URLs: []string{a.srv.URL}}, nil)
	resolvedAt := declaredAt.Add(3 * time.Minute)
	steps := []notify.Event{
		ev(1, event.IncidentDeclared, "detected", declaredAt),
		ev(2, event.ApprovalRequested, "awaiting_approval", declaredAt.Add(time.Second)),
		ev(3, event.ApprovalGranted, "rolling_back", declaredAt.Add(time.Minute)),
		ev(4, event.IncidentResolved, "resolved", resolvedAt),
		ev(5, event.ReportWritten, "resolved", resolvedAt.Add(time.Second)),
	}
	for _, e := range steps {
		if _, err := n.Notify(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	reqs := a.requests()
	if len(reqs) != len(steps) {
		t.Fatalf("%d posts, want %d", len(reqs), len(steps))
	}
	first := reqs[0].alerts[0]
	for i, r := range reqs {
		al := r.alerts[0]
		if !equalMaps(al.Labels, first.Labels) {
			t.Errorf("post %d: labels %v changed from %v", i, al.Labels, first.Labels)
		}
		if !al.StartsAt.Equal(declaredAt) {
			t.Errorf("post %d: startsAt %s, want %s", i, al.StartsAt, declaredAt)
		}
		if got := al.Annotations["state"]; got != steps[i].State {
			t.Errorf("post %d: state annotation %q, want %q", i, got, steps[i].State)
		}
		wantEnd := sendTime.Add(4 * resend)
		if i >= 3 {
			wantEnd = resolvedAt
		}
		if !al.EndsAt.Equal(wantEnd) {
			t.Errorf("post %d (%s): endsAt %s, want %s", i, steps[i].Type, al.EndsAt, wantEnd)
		}
	}
	if _, ok := reqs[3].alerts[0].Annotations["proposed_action"]; ok {
		t.Error("a resolved alert proposes an action")
	}
}

// TestClosedEndsFailedDoesNot: closed ends the alert; failed, held and
// escalated incidents stay open (a person must act) and keep firing.
func TestClosedEndsFailedDoesNot(t *testing.T) {
	for _, tc := range []struct {
		state string
		ended bool
	}{{"closed", true}, {"resolved", true}, {"failed", false}, {"held", false}, {"escalated", false}, {"verifying", false}} {
		a := newAM(t)
		n := newNotifier(t, config.AlertmanagerNotifier{URLs: []string{a.srv.URL}}, nil)
		at := declaredAt.Add(time.Minute)
		if _, err := n.Notify(context.Background(), ev(1, event.IncidentClosed, tc.state, at)); err != nil {
			t.Fatal(err)
		}
		end := a.requests()[0].alerts[0].EndsAt
		if got := end.Equal(at); got != tc.ended {
			t.Errorf("%s: endsAt %s, ended = %v, want %v", tc.state, end, got, tc.ended)
		}
	}
}

// TestSourceEventsNotPosted: events bound to no incident are not alerts.
func TestSourceEventsNotPosted(t *testing.T) {
	a := newAM(t)
	n := newNotifier(t, config.AlertmanagerNotifier{URLs: []string{a.srv.URL}}, nil)
	for _, typ := range []event.Type{event.SourceUnreachable, event.SourceRecovered} {
		retry, err := n.Notify(context.Background(), notify.Event{ID: "src_prom_1", Type: typ, State: "unreachable"})
		if retry || err != nil {
			t.Errorf("%s: Notify = %v, %v", typ, retry, err)
		}
	}
	if r := a.requests(); len(r) != 0 {
		t.Errorf("%d posts, want none", len(r))
	}
}

// TestRetrySemantics: every URL gets every post; the post succeeds when
// all accepted, is retried when any failed for a retryable reason, and is
// permanent when the failures are all rejections.
func TestRetrySemantics(t *testing.T) {
	down := func(t *testing.T) string { // a port nobody listens on
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		u := "http://" + l.Addr().String()
		l.Close()
		return u
	}
	for _, tc := range []struct {
		name     string
		a, b     int // 0: connection refused
		retry    bool
		fails    bool
		wantWait time.Duration
	}{
		{"both accept", 200, 200, false, false, 0},
		{"one 503", 200, 503, true, true, 7 * time.Second},
		{"one down", 0, 200, true, true, 0},
		{"one 429", 429, 200, true, true, 7 * time.Second},
		{"both reject", 400, 422, false, true, 0},
		{"reject and 500", 400, 500, true, true, 7 * time.Second},
		{"accept and reject", 200, 400, false, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var urls []string
			var ams []*am
			for _, code := range []int{tc.a, tc.b} {
				if code == 0 {
					urls = append(urls, down(t))
					continue
				}
				s := newAM(t, code)
				s.retry = "7"
				ams = append(ams, s)
				urls = append(urls, s.srv.URL)
			}
			n := newNotifier(t, config.AlertmanagerNotifier{URLs: urls}, nil)
			retry, err := n.Notify(context.Background(), ev(1, event.IncidentDeclared, "detected", declaredAt))
			if retry != tc.retry || (err != nil) != tc.fails {
				t.Fatalf("Notify = %v, %v; want retry %v, error %v", retry, err, tc.retry, tc.fails)
			}
			for i, s := range ams {
				if len(s.requests()) != 1 {
					t.Errorf("alertmanager %d got %d posts, want 1", i, len(s.requests()))
				}
			}
			if err == nil {
				return
			}
			var ra notify.RetryAfterError
			if !errors.As(err, &ra) || ra.RetryAfter() != tc.wantWait {
				t.Errorf("RetryAfter of %v = %v, want %v", err, ra, tc.wantWait)
			}
		})
	}
}

// TestCredentialsNeverShown: user info and query values of the URLs appear
// in no error or log line, of an answer or of a transport failure; the
// request still carries the basic auth.
func TestCredentialsNeverShown(t *testing.T) {
	secrets := []string{"USERSECRET", "PASSWORDSECRET", "QUERYSECRET"}
	a := newAM(t, http.StatusInternalServerError)
	var auth string
	var mu sync.Mutex
	inner := a.srv.Config.Handler
	a.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = r.Header.Get("Authorization")
		mu.Unlock()
		inner.ServeHTTP(w, r)
	})
	withSecrets := func(u string) string {
		return strings.Replace(u, "://", "://USERSECRET:PASSWORDSECRET@", 1) + "/am?token=QUERYSECRET"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close()
	core, logs := observer.New(zap.DebugLevel)
	n := newNotifier(t, config.AlertmanagerNotifier{URLs: []string{withSecrets(a.srv.URL), withSecrets(down)}}, zap.New(core))
	_, err = n.Notify(context.Background(), ev(1, event.IncidentDeclared, "detected", declaredAt))
	if err == nil {
		t.Fatal("Notify succeeded against a 500 and a closed port")
	}
	n.Repost(context.Background(), nil) // logs its failure
	texts := []string{err.Error()}
	for _, e := range logs.All() {
		enc, _ := json.Marshal(e.ContextMap())
		texts = append(texts, e.Message+" "+string(enc))
	}
	if len(texts) < 2 {
		t.Fatalf("the failed re-post logged nothing")
	}
	for _, text := range texts {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%q leaks %s", text, s)
			}
		}
	}
	if !strings.Contains(err.Error(), a.srv.URL+"/am") || !strings.Contains(err.Error(), "status 500") {
		t.Errorf("error %q does not say which Alertmanager answered what", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if auth == "" {
		t.Error("the URL's user info was not sent as basic auth")
	}
	if _, err := alertmanager.New(config.AlertmanagerNotifier{URLs: []string{"ftp://USERSECRET:PASSWORDSECRET@x/?token=QUERYSECRET"}}, nil); err == nil ||
		strings.Contains(err.Error(), "SECRET") {
		t.Errorf("New with a bad URL: %v", err)
	}
}

// TestRunReposts: Run re-posts the open incidents it is given every resend
// interval, with startsAt from the first event and endsAt moving ahead,
// and stops re-posting an incident once it ended or is no longer listed.
func TestRunReposts(t *testing.T) {
	a := newAM(t)
	var clock struct {
		sync.Mutex
		now time.Time
	}
	clock.now = sendTime
	now := func() time.Time {
		clock.Lock()
		defer clock.Unlock()
		clock.now = clock.now.Add(time.Second)
		return clock.now
	}
	n, err := alertmanager.New(config.AlertmanagerNotifier{URLs: []string{a.srv.URL}, ResendInterval: config.Duration(20 * time.Millisecond),
		Timeout: config.Duration(5 * time.Second)}, nil, alertmanager.WithNow(now))
	if err != nil {
		t.Fatal(err)
	}
	other := ev(1, event.IncidentDeclared, "detected", declaredAt)
	other.Incident, other.ID = 43, "evt_43_1"
	var openMu sync.Mutex
	open := []notify.Event{
		ev(1, event.IncidentDeclared, "detected", declaredAt),
		ev(2, event.ApprovalRequested, "awaiting_approval", declaredAt.Add(time.Second)),
		other,
	}
	openFunc := func(context.Context) ([]notify.Event, error) {
		openMu.Lock()
		defer openMu.Unlock()
		return slices.Clone(open), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx, openFunc) }()
	stopped := false
	defer func() {
		if !stopped {
			cancel()
			<-done
		}
	}()

	waitFor(t, func() bool { return len(a.requests()) >= 3 }, "three re-posts")
	reqs := a.requests()
	var lastEnd time.Time
	for i, r := range reqs[:3] {
		if len(r.alerts) != 2 {
			t.Fatalf("re-post %d holds %d alerts, want 2", i, len(r.alerts))
		}
		al := r.alerts[0]
		if al.Labels["incident"] != "42" || !al.StartsAt.Equal(declaredAt) || al.Annotations["state"] != "awaiting_approval" {
			t.Errorf("re-post %d: %+v", i, al)
		}
		if !al.EndsAt.After(lastEnd) {
			t.Errorf("re-post %d: endsAt %s did not move ahead of %s", i, al.EndsAt, lastEnd)
		}
		lastEnd = al.EndsAt
	}

	cancel()
	<-done
	stopped = true

	// 42 resolves (Notify) while the store still lists it; 43 leaves the
	// open list: a round of re-posting has nothing to post.
	if _, err := n.Notify(context.Background(), ev(3, event.IncidentResolved, "resolved", declaredAt.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	openMu.Lock()
	open = open[:2]
	openMu.Unlock()
	mark := len(a.requests())
	n.Repost(context.Background(), openFunc)
	if extra := a.requests()[mark:]; len(extra) != 0 {
		t.Errorf("re-posted after the end or the listing: %+v", extra[0].alerts)
	}
	// Without the store, the incidents Notify saw and that have not ended
	// are re-posted: 43 only.
	n.Repost(context.Background(), nil)
	extra := a.requests()[mark:]
	if len(extra) != 1 || len(extra[0].alerts) != 1 || extra[0].alerts[0].Labels["incident"] != "43" {
		t.Errorf("re-post without the store: %+v", extra)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTemplatesOverride: the configured templates replace the summary and
// description.
func TestTemplatesOverride(t *testing.T) {
	a := newAM(t)
	n := newNotifier(t, config.AlertmanagerNotifier{URLs: []string{a.srv.URL},
		Templates: config.Templates{Title: "{{upper .Service}} #{{.Incident}}", Text: "{{.Data.proposed_action}}"}}, nil)
	if _, err := n.Notify(context.Background(), ev(1, event.IncidentDeclared, "awaiting_approval", declaredAt)); err != nil {
		t.Fatal(err)
	}
	an := a.requests()[0].alerts[0].Annotations
	if an["summary"] != "CHECKOUT #42" || !strings.HasPrefix(an["description"], "roll back checkout v2.4.1 → v2.4.0: give the go") {
		t.Errorf("summary %q, description %q", an["summary"], an["description"])
	}
	if _, err := alertmanager.New(config.AlertmanagerNotifier{URLs: []string{a.srv.URL}, Templates: config.Templates{Title: "{{"}}, nil); err == nil {
		t.Error("a broken template was accepted")
	}
}

// A configured template that fails on an event does not cost the alert:
// the defaults render it.
func TestTemplateFailureFallsBack(t *testing.T) {
	a := newAM(t)
	n := newNotifier(t, config.AlertmanagerNotifier{URLs: []string{a.srv.URL},
		Templates: config.Templates{Title: "{{.Text.Nope}}"}}, nil)
	if _, err := n.Notify(context.Background(), ev(1, event.IncidentDeclared, "awaiting_approval", declaredAt)); err != nil {
		t.Fatal(err)
	}
	if an := a.requests()[0].alerts[0].Annotations; !strings.HasPrefix(an["summary"], "checkout: roll back v2.4.1 → v2.4.0") {
		t.Errorf("summary %q, want the default's", an["summary"])
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
