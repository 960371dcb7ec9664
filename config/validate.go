package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"

	"github.com/rollback-guardian/guardian/query"
	"github.com/rollback-guardian/guardian/sign"
)

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	labelRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// slackIDRE matches Slack user (U..., W...) and user group (S...) IDs.
	slackIDRE = regexp.MustCompile(`^[UWS][A-Z0-9]{2,20}$`)
	// dnsLabelRE is a Kubernetes object name usable as a prefix.
	dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)
)

// validator checks a decoded configuration, resolves relative file paths
// and reads secret files. Errors at, or under, a path that failed to decode
// are left out: the decoding error already says what is wrong there.
type validator struct {
	lines   map[string]int
	failed  map[string]bool // paths that failed to decode
	broke   map[string]bool // those paths and their ancestors
	dir     string
	sum     hash.Hash // of the file and the secrets read
	errs    Errors
	dropped int // errors beyond maxKeptErrors, not kept
	warns   []Warning
}

func newValidator(d *decoder, dir string) *validator {
	v := &validator{lines: d.lines, failed: map[string]bool{}, broke: map[string]bool{}, dir: dir, sum: sha256.New()}
	for _, f := range d.failed {
		v.failed[f] = true
		for p := f; ; p = parent(p) {
			if v.broke[p] {
				break
			}
			v.broke[p] = true
			if p == "" {
				break
			}
		}
	}
	return v
}

// line returns the line of path or of its closest ancestor in the file.
func (v *validator) line(path string) int {
	for p := path; ; p = parent(p) {
		if l, ok := v.lines[p]; ok {
			return l
		}
		if p == "" {
			return 0
		}
	}
}

// parent strips the last ".field" or "[i]" from a path.
func parent(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// broken reports whether path, or something inside it, failed to decode.
func (v *validator) broken(path string) bool {
	return v.broke[path]
}

// inFailed reports whether path is, or is inside, a path that failed to
// decode.
func (v *validator) inFailed(path string) bool {
	for p := path; ; p = parent(p) {
		if v.failed[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

func (v *validator) errorf(path, format string, args ...any) {
	if v.inFailed(path) {
		return
	}
	if len(v.errs) >= maxKeptErrors {
		v.dropped++
		return
	}
	msg := clipMessage(fmt.Sprintf(format, clipArgs(args)...))
	v.errs = append(v.errs, &FieldError{Path: clip(path), Line: v.line(path), Msg: msg})
}

// warnf records a warning: a setting that is probably a mistake, but may
// be intended.
func (v *validator) warnf(path, format string, args ...any) {
	if v.inFailed(path) {
		return
	}
	msg := clipMessage(fmt.Sprintf(format, clipArgs(args)...))
	v.warns = append(v.warns, Warning{Path: clip(path), Line: v.line(path), Msg: msg})
}

// has reports whether path is written in the file.
func (v *validator) has(path string) bool {
	_, ok := v.lines[path]
	return ok
}

func (v *validator) config(c *Config) {
	v.global(&c.Global)

	sources := map[string]string{}
	for i := range c.Sources {
		v.source(fmt.Sprintf("sources[%d]", i), &c.Sources[i], sources)
	}
	notifiers := map[string]string{}
	for i := range c.Notifiers {
		v.notifier(fmt.Sprintf("notifiers[%d]", i), &c.Notifiers[i], notifiers)
	}
	services := map[string]string{}
	for i := range c.Services {
		v.service(fmt.Sprintf("services[%d]", i), &c.Services[i], services, sources, notifiers)
	}
	v.statusPage("status_page", &c.StatusPage, services)
	v.statuspageComponents(c, services)
}

func (v *validator) postmortem(p string, pm *Postmortem) {
	if pm.Delay < 0 {
		v.errorf(p+".delay", "must not be negative")
	}
	v.positive(p+".duration", pm.Duration)
	if _, err := time.Parse("15:04", pm.At); err != nil {
		v.errorf(p+".at", "invalid time %q: want HH:MM", pm.At)
	}
	if _, err := time.LoadLocation(pm.TimeZone); err != nil {
		v.errorf(p+".time_zone", "unknown time zone %q", pm.TimeZone)
	}
	if pm.Organizer == "" && len(pm.Attendees) > 0 {
		v.errorf(p+".organizer", "required with attendees")
	}
	if pm.Organizer != "" {
		if _, err := mail.ParseAddress(pm.Organizer); err != nil {
			v.errorf(p+".organizer", "invalid email address %q", pm.Organizer)
		}
	}
	for i, a := range pm.Attendees {
		if _, err := mail.ParseAddress(a); err != nil {
			v.errorf(fmt.Sprintf("%s.attendees[%d]", p, i), "invalid email address %q", a)
		}
	}
}

func (v *validator) cluster(p string, c *Cluster) {
	if c.Kubeconfig != "" {
		path := commoncfg.JoinDir(v.dir, c.Kubeconfig)
		if err := readable(path); err != nil {
			v.errorf(p+".kubeconfig", "cannot read %q: %s", c.Kubeconfig, reason(err))
		}
		c.Kubeconfig = path
	}
	if c.Namespace == "" {
		c.Namespace = os.Getenv("POD_NAMESPACE")
	}
	if c.Namespace == "" {
		v.errorf(p+".namespace", "required (or set POD_NAMESPACE)")
	}
	v.positive(p+".lease_duration", c.LeaseDuration)
	v.positive(p+".renew_deadline", c.RenewDeadline)
	v.positive(p+".retry_period", c.RetryPeriod)
	if c.RenewDeadline >= c.LeaseDuration {
		v.errorf(p+".renew_deadline", "%s must be shorter than lease_duration %s", c.RenewDeadline, c.LeaseDuration)
	}
	if c.RetryPeriod >= c.RenewDeadline {
		v.errorf(p+".retry_period", "%s must be shorter than renew_deadline %s", c.RetryPeriod, c.RenewDeadline)
	}
	if c.Shards < 0 || c.Shards > MaxShards {
		v.errorf(p+".shards", "%d: want 0 (one leader drives every service) to %d", c.Shards, MaxShards)
	}
	if c.AdvertiseURL != "" {
		v.httpURL(p+".advertise_url", c.AdvertiseURL)
	}
	for _, f := range []struct{ path, val string }{{p + ".lease_name", c.LeaseName}, {p + ".state_prefix", c.StatePrefix}} {
		if !dnsLabelRE.MatchString(f.val) {
			v.errorf(f.path, "invalid name %q: want a lowercase DNS label", f.val)
		}
	}
}

func (v *validator) global(g *Global) {
	v.postmortem("global.postmortem", &g.Postmortem)
	switch {
	case g.Cluster != nil && kubernetesLeftOut != "":
		v.errorf("global.cluster", "%s", slimBuild("Kubernetes clustering", kubernetesLeftOut))
	case g.Cluster != nil:
		v.cluster("global.cluster", g.Cluster)
	}
	v.positive("global.evaluation_interval", g.EvaluationInterval)
	v.positive("global.query_timeout", g.QueryTimeout)
	v.externalURL("global.external_url", g.ExternalURL)
	if _, port, err := net.SplitHostPort(g.ListenAddress); err != nil {
		v.errorf("global.listen_address", "invalid address %q: want host:port", g.ListenAddress)
	} else if !validPort(port) {
		v.errorf("global.listen_address", "invalid port %q in %q: want 1 to 65535", port, g.ListenAddress)
	}
	if g.StateDir == "" {
		v.errorf("global.state_dir", "required")
	}
	if g.Auth.TokensFile != "" {
		p := commoncfg.JoinDir(v.dir, g.Auth.TokensFile)
		if err := readable(p); err != nil {
			v.errorf("global.auth.tokens_file", "cannot read %q: %s", g.Auth.TokensFile, reason(err))
		}
		g.Auth.TokensFile = p
	}
}

// name checks a required, unique name; seen maps names to their paths.
func (v *validator) name(path, kind, name string, seen map[string]string) {
	switch {
	case name == "":
		v.errorf(path, "required")
	case !nameRE.MatchString(name):
		v.errorf(path, "invalid name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit", name)
	default:
		if first, dup := seen[name]; dup {
			v.errorf(path, "duplicate %s name %q, first defined at line %d", kind, name, v.line(first))
			return
		}
		seen[name] = path
	}
}

func (v *validator) positive(path string, d Duration) {
	if d <= 0 {
		v.errorf(path, "must be positive, got %s", d)
	}
}

func (v *validator) httpURL(path, s string) {
	if s == "" {
		v.errorf(path, "required")
		return
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errorf(path, "invalid URL %q: want an absolute http or https URL", s)
		return
	}
	if port := u.Port(); port != "" && !validPort(port) {
		v.errorf(path, "invalid port %q in %q: want 1 to 65535", port, s)
	}
}

// validPort reports whether port is a TCP port number, 1 to 65535.
func validPort(port string) bool {
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535 && port[0] != '+'
}

// template checks a PromQL template: template syntax, fields, PromQL
// syntax and label values outside double quotes.
func (v *validator) template(path, text string) {
	t, err := query.New("query", text)
	if err == nil {
		err = t.Check()
	}
	if err != nil {
		v.errorf(path, "%v", err)
	}
}

func (v *validator) source(p string, s *Source, seen map[string]string) {
	v.name(p+".name", "source", s.Name, seen)
	if s.Prometheus == nil {
		if !v.broken(p + ".prometheus") {
			v.errorf(p, "no source type: want prometheus")
		}
		return
	}
	v.prometheus(p+".prometheus", s.Prometheus)
}

func (v *validator) prometheus(p string, ps *PrometheusSource) {
	v.httpURL(p+".url", ps.URL)
	v.positive(p+".timeout", ps.Timeout)
	v.httpClient(p, &ps.HTTPClientConfig)
}

// httpClient checks prometheus/common HTTP client settings inlined at p.
func (v *validator) httpClient(p string, hc *commoncfg.HTTPClientConfig) {
	// Files the client reads per request must exist now, or every query
	// would fail later.
	files := map[string]string{"bearer_token_file": hc.BearerTokenFile}
	if hc.BasicAuth != nil {
		files["basic_auth.username_file"] = hc.BasicAuth.UsernameFile
		files["basic_auth.password_file"] = hc.BasicAuth.PasswordFile
	}
	if hc.Authorization != nil {
		files["authorization.credentials_file"] = hc.Authorization.CredentialsFile
	}
	if hc.OAuth2 != nil {
		files["oauth2.client_secret_file"] = hc.OAuth2.ClientSecretFile
	}
	files["tls_config.ca_file"] = hc.TLSConfig.CAFile
	files["tls_config.cert_file"] = hc.TLSConfig.CertFile
	files["tls_config.key_file"] = hc.TLSConfig.KeyFile
	for _, field := range sortedKeys(files) {
		if f := files[field]; f != "" {
			if err := readable(commoncfg.JoinDir(v.dir, f)); err != nil {
				v.errorf(p+"."+field, "cannot read %q: %s", f, reason(err))
			}
		}
	}
	// With ",inline" neither HTTPClientConfig's UnmarshalYAML nor its
	// TLSConfig's runs, so validate here.
	if err := hc.Validate(); err != nil {
		v.errorf(p, "%v", err)
	}
	if err := hc.TLSConfig.Validate(); err != nil {
		v.errorf(p+".tls_config", "%v", err)
	}
	if hc.OAuth2 != nil {
		if err := hc.OAuth2.TLSConfig.Validate(); err != nil {
			v.errorf(p+".oauth2.tls_config", "%v", err)
		}
	}
	hc.SetDirectory(v.dir)
}

func (v *validator) notifier(p string, n *Notifier, seen map[string]string) {
	v.name(p+".name", "notifier", n.Name, seen)
	receivers := 0
	if n.Webhook != nil {
		receivers++
		v.webhook(p+".webhook", n.Webhook)
	}
	if n.Alertmanager != nil {
		receivers++
		v.alertmanager(p+".alertmanager", n.Alertmanager)
	}
	if n.Slack != nil {
		receivers++
		v.slack(p+".slack", n.Slack)
	}
	if n.PagerDuty != nil {
		receivers++
		v.pagerduty(p+".pagerduty", n.PagerDuty)
	}
	if n.Teams != nil {
		receivers++
		v.teams(p+".teams", n.Teams)
	}
	if n.Statuspage != nil {
		receivers++
		v.statuspage(p+".statuspage", n.Statuspage)
	}
	broken := false
	for _, r := range []string{"webhook", "alertmanager", "slack", "pagerduty", "teams", "statuspage"} {
		broken = broken || v.broken(p+"."+r)
	}
	switch {
	case receivers == 0 && !broken:
		v.errorf(p, "no receiver: want one of webhook, alertmanager, slack, pagerduty, teams, statuspage")
	case receivers > 1:
		v.errorf(p, "want exactly one receiver, got %d", receivers)
	}
}

func (v *validator) webhook(p string, w *Webhook) {
	v.httpURL(p+".url", w.URL)
	v.templates(p+".templates", w.Templates)
	if w.Templates.Title != "" {
		v.errorf(p+".templates.title", "unused: a webhook's body has no title; set templates.text")
	}
	if w.SecretFile == "" {
		return
	}
	path := commoncfg.JoinDir(v.dir, w.SecretFile)
	data, err := readSecret(path)
	switch {
	case err != nil:
		v.errorf(p+".secret_file", "cannot read %q: %s", w.SecretFile, reason(err))
	case strings.TrimSpace(string(data)) == "":
		v.errorf(p+".secret_file", "%q is empty", w.SecretFile)
	default:
		w.Secret = commoncfg.Secret(strings.TrimSpace(string(data)))
		fmt.Fprintf(v.sum, "\x00%s\x00", path)
		v.sum.Write(data)
		if _, err := sign.Key(string(w.Secret)); err != nil {
			v.errorf(p+".secret_file", "%v", err)
		}
	}
	w.SecretFile = path
}

func (v *validator) service(p string, s *Service, seen, sources, notifiers map[string]string) {
	v.name(p+".name", "service", s.Name, seen)

	switch {
	case s.Source != "":
		if _, ok := sources[s.Source]; !ok {
			v.errorf(p+".source", "undefined source %q", s.Source)
		}
		if s.Scrape != nil {
			v.errorf(p+".scrape", "cannot be used with source %q: scrape configures the embedded source", s.Source)
		}
	case s.Scrape == nil:
		if !v.broken(p+".scrape") && !v.broken(p+".source") {
			v.errorf(p, "no metric source: set source to a name from sources, or scrape.url")
		}
	}
	if s.Scrape != nil {
		v.scrape(p+".scrape", s.Scrape)
	}

	if s.Deploy.VersionQuery != "" {
		v.template(p+".deploy.version_query", s.Deploy.VersionQuery)
	}
	if !labelRE.MatchString(s.Deploy.VersionLabel) {
		v.errorf(p+".deploy.version_label", "invalid label name %q", s.Deploy.VersionLabel)
	}
	switch k := s.Deploy.Kubernetes; {
	case k != nil && kubernetesLeftOut != "":
		v.errorf(p+".deploy.kubernetes", "%s", slimBuild("Kubernetes deploy detection", kubernetesLeftOut))
	case k != nil:
		v.kubernetesDeploy(p+".deploy.kubernetes", k)
	}
	if s.Deploy.MinTraffic < 0 {
		v.errorf(p+".deploy.min_traffic", "must not be negative, got %g", s.Deploy.MinTraffic)
	}
	v.positive(p+".watch_window", s.WatchWindow)
	switch s.Mode {
	case ModeEnforce, ModeShadow:
	case "":
		s.Mode = ModeEnforce
	default:
		v.errorf(p+".mode", "invalid mode %q: want enforce or shadow", s.Mode)
	}

	if len(s.Triggers) == 0 && !v.broken(p+".triggers") {
		v.errorf(p+".triggers", "at least one trigger is required")
	}
	triggers := map[string]string{}
	for i := range s.Triggers {
		tp := fmt.Sprintf("%s.triggers[%d]", p, i)
		t := &s.Triggers[i]
		v.trigger(tp, t, triggers)
		if t.For >= s.WatchWindow && s.WatchWindow > 0 && !v.broken(p+".watch_window") {
			// A warning, not an error: such a trigger still shows its
			// pending state, and a test may want one that never fires.
			v.warnf(tp+".for", "%s is not shorter than watch_window %s: the watch closes before a condition has held that long, so the trigger never fires", t.For, s.WatchWindow)
		}
	}
	for i, n := range s.Notify {
		if _, ok := notifiers[n]; !ok {
			v.errorf(fmt.Sprintf("%s.notify[%d]", p, i), "undefined notifier %q", n)
		}
	}
	v.approval(p+".approval", &s.Approval)
	for i, id := range s.Approval.SlackApprovers {
		if !slackIDRE.MatchString(id) {
			v.errorf(fmt.Sprintf("%s.approval.slack_approvers[%d]", p, i), "invalid Slack ID %q: want a user (U0123ABC, W0123ABC) or user group (S0123ABC) ID", id)
		}
	}
	v.responders(p+".responders", s.Responders)
	v.recovery(p+".recovery", &s.Recovery)
	if s.Rollback.Application == nil && s.Rollback.Database != nil {
		v.errorf(p+".rollback.database", "needs rollback.application: the application is always rolled back first")
	}
	if s.Rollback.Application != nil {
		v.executor(p+".rollback.application", s.Rollback.Application)
	}
	if s.Rollback.Database != nil {
		v.executor(p+".rollback.database", s.Rollback.Database)
	}
}

// kubernetesDeploy checks deploy detection from a Kubernetes workload.
func (v *validator) kubernetesDeploy(p string, k *KubernetesDeploy) {
	if k.Namespace == "" {
		v.errorf(p+".namespace", "required")
	}
	switch {
	case k.Deployment == "" && k.Rollout == "":
		v.errorf(p+".deployment", "required (or rollout)")
	case k.Deployment != "" && k.Rollout != "":
		v.errorf(p+".rollout", "set deployment or rollout, not both")
	}
	switch k.OnProgressDeadline {
	case "":
		k.OnProgressDeadline = OnProgressDeadlineIncident
	case OnProgressDeadlineIncident, OnProgressDeadlineIgnore:
	default:
		v.errorf(p+".on_progress_deadline", "invalid value %q: want %s or %s", k.OnProgressDeadline, OnProgressDeadlineIncident, OnProgressDeadlineIgnore)
	}
	if k.Kubeconfig != "" {
		path := commoncfg.JoinDir(v.dir, k.Kubeconfig)
		if err := readable(path); err != nil {
			v.errorf(p+".kubeconfig", "cannot read %q: %s", k.Kubeconfig, reason(err))
		}
		k.Kubeconfig = path
	}
}

// executor checks one rollback backend with the plugin's own validation,
// giving each of its errors a field path and line.
func (v *validator) executor(p string, e *Executor) {
	switch {
	case v.broken(p):
		return
	}
	n := 0
	for _, set := range []bool{e.Command != nil, e.Webhook != nil, e.Kubernetes != nil, e.ArgoRollouts != nil, e.Helm != nil} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		v.errorf(p, "no executor: want command, webhook, kubernetes, argo_rollouts or helm")
		return
	case n > 1:
		v.errorf(p, "want exactly one executor, got %d", n)
		return
	}
	for _, x := range []struct {
		set        bool
		field, tag string
	}{
		{e.Kubernetes != nil, "kubernetes", kubernetesLeftOut},
		{e.ArgoRollouts != nil, "argo_rollouts", kubernetesLeftOut},
		{e.Helm != nil, "helm", helmTag()},
	} {
		if x.set && x.tag != "" {
			v.errorf(p+"."+x.field, "%s", slimBuild("the "+x.field+" executor", x.tag))
			return
		}
	}
	if k := e.Kubernetes; k != nil {
		if k.Connection.Kubeconfig != "" {
			k.Connection.Kubeconfig = commoncfg.JoinDir(v.dir, k.Connection.Kubeconfig)
		}
		v.pluginErrors(p+".kubernetes", k.Validate(), "")
	}
	if r := e.ArgoRollouts; r != nil {
		if r.Connection.Kubeconfig != "" {
			r.Connection.Kubeconfig = commoncfg.JoinDir(v.dir, r.Connection.Kubeconfig)
		}
		v.pluginErrors(p+".argo_rollouts", r.Validate(), "")
	}
	if h := e.Helm; h != nil {
		if h.Connection.Kubeconfig != "" {
			h.Connection.Kubeconfig = commoncfg.JoinDir(v.dir, h.Connection.Kubeconfig)
		}
		v.pluginErrors(p+".helm", h.Validate(), "")
	}
	if c := e.Command; c != nil {
		dirOK := true
		if c.Dir != "" {
			dir := c.Dir
			c.Dir = commoncfg.JoinDir(v.dir, c.Dir)
			if err := isDir(c.Dir); err != nil {
				v.errorf(p+".command.dir", "%q %s", dir, err)
				dirOK = false
			}
		}
		v.pluginErrors(p+".command", c.Validate(), "command")
		if dirOK {
			v.program(p+".command[0]", c)
		}
		v.shellWarnings(p+".command", c.Command)
	}
	if w := e.Webhook; w != nil {
		if w.SecretFile != "" {
			path := commoncfg.JoinDir(v.dir, w.SecretFile)
			data, err := readSecret(path)
			switch {
			case err != nil:
				v.errorf(p+".webhook.secret_file", "cannot read %q: %s", w.SecretFile, reason(err))
			case strings.TrimSpace(string(data)) == "":
				v.errorf(p+".webhook.secret_file", "%q is empty", w.SecretFile)
			default:
				w.Secret = commoncfg.Secret(strings.TrimSpace(string(data)))
				fmt.Fprintf(v.sum, "\x00%s\x00", path)
				v.sum.Write(data)
			}
			w.SecretFile = path
		}
		v.pluginErrors(p+".webhook", w.Validate(), "")
	}
}

// pluginErrors turns a plugin's "field: message" errors into field errors
// under p. self is the plugin's field that p itself stands for (the
// command list of a command executor), so "command[0]: x" lands on
// p+"[0]" rather than p+".command[0]".
func (v *validator) pluginErrors(p string, err error, self string) {
	if err == nil {
		return
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		field, msg, ok := strings.Cut(e.Error(), ": ")
		if !ok {
			v.errorf(p, "%s", e.Error())
			continue
		}
		path := p + "." + field
		if self != "" && strings.HasPrefix(field, self) {
			path = p + strings.TrimPrefix(field, self)
		}
		v.errorf(path, "%s", msg)
	}
}

func (v *validator) approval(p string, a *Approval) {
	switch a.Mode {
	case ApprovalManual, ApprovalAuto:
		if v.has(p + ".timeout") {
			v.errorf(p+".timeout", "only used with mode auto_after")
		}
		if v.has(p + ".on_timeout") {
			v.errorf(p+".on_timeout", "only used with mode auto_after")
		}
	case ApprovalAutoAfter:
		if !v.has(p + ".timeout") {
			v.errorf(p+".timeout", "required with mode auto_after")
		} else {
			v.positive(p+".timeout", a.Timeout)
		}
		switch a.OnTimeout {
		case "":
			a.OnTimeout = "rollback"
		case "rollback", "hold":
		default:
			v.errorf(p+".on_timeout", "invalid value %q: want rollback or hold", a.OnTimeout)
		}
	default:
		v.errorf(p+".mode", "invalid mode %q: want manual, auto or auto_after", a.Mode)
	}
}

func (v *validator) recovery(p string, r *Recovery) {
	if r.Tolerance < 0 || r.Tolerance > 10 {
		v.errorf(p+".tolerance", "must be between 0 and 10, got %g", r.Tolerance)
	}
	v.positive(p+".stable_for", r.StableFor)
	v.positive(p+".timeout", r.Timeout)
	if r.StableFor >= r.Timeout && !v.broken(p+".stable_for") && !v.broken(p+".timeout") {
		v.errorf(p+".stable_for", "%s must be shorter than the timeout %s", r.StableFor, r.Timeout)
	}
	names := map[string]string{}
	for i := range r.Smoke {
		sp := fmt.Sprintf("%s.smoke[%d]", p, i)
		s := &r.Smoke[i]
		v.httpURL(sp+".url", s.URL)
		if s.Name == "" {
			s.Name = s.URL
		} else {
			v.name(sp+".name", "smoke check", s.Name, names)
		}
		switch s.Method {
		case "GET", "HEAD", "POST", "PUT", "OPTIONS":
		default:
			v.errorf(sp+".method", "invalid method %q", s.Method)
		}
		if s.ExpectStatus < 100 || s.ExpectStatus > 599 {
			v.errorf(sp+".expect_status", "invalid HTTP status %d", s.ExpectStatus)
		}
		v.positive(sp+".timeout", s.Timeout)
	}
}

func (v *validator) scrape(p string, s *Scrape) {
	v.httpURL(p+".url", s.URL)
	v.positive(p+".interval", s.Interval)
	if !v.has(p + ".timeout") {
		s.Timeout = min(s.Interval, DefaultMaxScrapeTimeout)
		return
	}
	v.positive(p+".timeout", s.Timeout)
	if s.Timeout > s.Interval && !v.broken(p+".interval") {
		v.errorf(p+".timeout", "%s must not exceed the interval %s", s.Timeout, s.Interval)
	}
}

func (v *validator) trigger(p string, t *Trigger, seen map[string]string) {
	v.name(p+".name", "trigger", t.Name, seen)
	if t.Name == ProgressDeadlineTrigger {
		v.errorf(p+".name", "%q is the built-in trigger of deploy.kubernetes.on_progress_deadline: choose another name", t.Name)
	}
	switch {
	case t.Query != "":
		v.template(p+".query", t.Query)
	case t.Sequential == nil && t.Latency == nil:
		v.errorf(p+".query", "required")
	}
	v.positive(p+".window", t.Window)
	if t.Above == nil && t.Below == nil && t.AboveBaseline == nil && t.Sequential == nil && t.Latency == nil &&
		!v.broken(p+".above") && !v.broken(p+".below") && !v.broken(p+".above_baseline") && !v.broken(p+".sequential") && !v.broken(p+".latency") {
		v.errorf(p, "no condition: set above, below or above_baseline")
	}
	switch {
	case t.Latency != nil:
		v.latency(p, t)
	case t.Sequential != nil:
		v.sequential(p, t)
	default:
		v.thresholds(p, t)
	}
	switch {
	case t.MinRequests < 0:
		v.errorf(p+".min_requests", "must not be negative, got %g", t.MinRequests)
	case t.MinRequests > 0 && t.VolumeQuery == "":
		v.errorf(p+".min_requests", "needs volume_query")
	}
	if t.VolumeQuery != "" {
		v.template(p+".volume_query", t.VolumeQuery)
	}
	if t.Severity == "" {
		v.errorf(p+".severity", "must not be empty")
	}
	if t.SlowerThan != nil {
		v.positive(p+".slower_than", *t.SlowerThan)
	}
}

// thresholds checks that a trigger's above and below can be breached
// together, and warns about an above that every rate, ratio or count
// breaches.
func (v *validator) thresholds(p string, t *Trigger) {
	if t.Above != nil && t.Below != nil && *t.Above >= *t.Below {
		v.errorf(p+".below", "never fires: no value is above %g and below %g at once (the conditions are ANDed)", *t.Above, *t.Below)
	}
	if t.Above != nil && *t.Above < 0 {
		v.warnf(p+".above", "%g is negative: every value of 0 or more breaches it, so the trigger fires whenever the query returns a rate, ratio or count", *t.Above)
	}
}

// sequential checks a trigger's sequential test and the trigger fields
// that do not combine with it.
func (v *validator) sequential(p string, t *Trigger) {
	sp := p + ".sequential"
	s := t.Sequential
	for _, f := range []struct{ field, text string }{{"errors", s.Errors}, {"requests", s.Requests}} {
		if f.text == "" {
			if !v.broken(sp + "." + f.field) {
				v.errorf(sp+"."+f.field, "required: a PromQL template counting %s since the deploy, e.g. sum(increase(...[{{.SinceDeploy}}]))", f.field)
			}
			continue
		}
		v.template(sp+"."+f.field, f.text)
	}
	if !(s.Alpha > 0 && s.Alpha <= 0.5) {
		v.errorf(sp+".alpha", "must be in (0, 0.5], got %g", s.Alpha)
	}
	switch e := s.MinEffect; {
	case e.IsRatio() && e.Ratio <= 1:
		v.errorf(sp+".min_effect", "a ratio must be above 1x, got %s", e.Text)
	case !e.IsRatio() && !(e.Delta > 0 && e.Delta < 1):
		v.errorf(sp+".min_effect", "a difference of error ratios must be in (0, 1), got %s", e.Text)
	}
	v.positive(sp+".baseline_window", s.BaselineWindow)
	if t.Above != nil && !(*t.Above > 0 && *t.Above < 1) {
		v.errorf(p+".above", "with sequential, above is a limit on the error ratio and must be in (0, 1), got %g", *t.Above)
	}
	if t.Below != nil {
		v.errorf(p+".below", "cannot be used with sequential")
	}
	if t.AboveBaseline != nil {
		v.errorf(p+".above_baseline", "cannot be used with sequential: it compares with the baseline itself (see sequential.min_effect)")
	}
	if t.MinRequests != 0 || t.VolumeQuery != "" {
		field := "min_requests"
		if t.MinRequests == 0 {
			field = "volume_query"
		}
		v.errorf(p+"."+field, "cannot be used with sequential: low traffic is inconclusive by itself")
	}
}

// latency checks a trigger's latency test and the trigger fields that do
// not combine with it.
func (v *validator) latency(p string, t *Trigger) {
	lp := p + ".latency"
	l := t.Latency
	switch {
	case l.Buckets == "":
		if !v.broken(lp + ".buckets") {
			v.errorf(lp+".buckets", "required: a PromQL template of the histogram's bucket counts since the deploy, e.g. sum by (le) (increase(x_bucket{...}[{{.SinceDeploy}}]))")
		}
	default:
		tm, err := query.New("query", l.Buckets)
		if err == nil {
			err = tm.Check()
		}
		var q string
		if err == nil {
			q, err = tm.Render(query.Vars{Service: "service", Version: "v2", Baseline: "v1", Window: time.Duration(DefaultTriggerWindow), SinceDeploy: time.Minute})
		}
		if err == nil {
			err = query.CheckBuckets(q)
		}
		if err != nil {
			v.errorf(lp+".buckets", "%v", err)
		}
	}
	if !(l.Alpha > 0 && l.Alpha <= 0.5) {
		v.errorf(lp+".alpha", "must be in (0, 0.5], got %g", l.Alpha)
	}
	switch e := l.MinEffect; {
	case e.IsRatio() && e.Ratio <= 1:
		v.errorf(lp+".min_effect", "a ratio must be above 1x, got %s", e.Text)
	case !e.IsRatio() && !(e.Delta > 0 && e.Delta < 1):
		v.errorf(lp+".min_effect", "a difference of shares of slow requests must be in (0, 1), got %s", e.Text)
	}
	for i, q := range l.Quantiles {
		if !(q > 0 && q < 1) {
			v.errorf(fmt.Sprintf("%s.quantiles[%d]", lp, i), "must be in (0, 1), for example 0.99, got %g", q)
		}
	}
	v.positive(lp+".baseline_window", l.BaselineWindow)
	for _, f := range []struct {
		field string
		set   bool
	}{
		{"above", t.Above != nil}, {"below", t.Below != nil}, {"above_baseline", t.AboveBaseline != nil},
		{"sequential", t.Sequential != nil}, {"min_requests", t.MinRequests != 0},
		{"volume_query", t.VolumeQuery != "" && t.MinRequests == 0},
	} {
		if f.set {
			v.errorf(p+"."+f.field, "cannot be used with latency: the latency test compares with the baseline itself and takes low traffic as inconclusive")
		}
	}
}

// program checks that a command's program given as a path (with a '/')
// is an executable file: relative paths are relative to the command's
// directory. A bare name is looked up in PATH when the command runs, which
// may differ from the PATH of `guardian check`.
func (v *validator) program(path string, c *CommandExecutor) {
	if len(c.Command) == 0 || !strings.Contains(c.Command[0], "/") || strings.Contains(c.Command[0], "{{") {
		return
	}
	prog := c.Command[0]
	if !filepath.IsAbs(prog) {
		if c.Dir == "" {
			return // relative to Guardian's working directory, unknown here
		}
		prog = filepath.Join(c.Dir, prog)
	}
	st, err := os.Stat(prog)
	switch {
	case err != nil:
		v.errorf(path, "cannot run %q: %s", c.Command[0], reason(err))
	case st.IsDir():
		v.errorf(path, "cannot run %q: is a directory", c.Command[0])
	case st.Mode().Perm()&0o111 == 0:
		v.errorf(path, "cannot run %q: not executable", c.Command[0])
	}
}

// isDir checks that path is an existing directory, saying what is wrong
// after the path.
func isDir(path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("does not exist")
	case err != nil:
		return fmt.Errorf("cannot be used: %s", reason(err))
	case !st.IsDir():
		return errors.New("is not a directory")
	}
	return nil
}

// maxSecretSize is the largest secret file: a signing key is a few dozen
// bytes, and a path such as /dev/zero must not be read without end.
const maxSecretSize = 64 << 10

// readSecret reads a secret file of at most maxSecretSize bytes.
func readSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSecretSize {
		return nil, fmt.Errorf("larger than %d KiB: not a secret", maxSecretSize>>10)
	}
	return data, nil
}

// readable checks that path is a readable file.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.IsDir() {
		return errors.New("is a directory")
	}
	return nil
}

// reason returns the cause of a file error without the path, which the
// message already names as written.
func reason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
