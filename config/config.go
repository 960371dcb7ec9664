// Package config defines Guardian's configuration schema, decodes it strictly,
// applies defaults, validates it with field paths and line numbers, and
// coordinates reloads from the file watcher, SIGHUP and the HTTP API.
package config

import (
	"time"

	commoncfg "github.com/prometheus/common/config"
)

// Config is the whole configuration file.
type Config struct {
	// Global holds the daemon-wide settings.
	Global Global `yaml:"global"`
	// Sources are the named metric sources that services refer to by name.
	Sources []Source `yaml:"sources"`
	// Services are the guarded services.
	Services []Service `yaml:"services"`
	// Notifiers are the named receivers of incident events that services
	// refer to by name in notify.
	Notifiers []Notifier `yaml:"notifiers"`
	// StatusPage configures the stakeholder status page at /status.
	StatusPage StatusPage `yaml:"status_page"`

	// Warnings are the settings of a valid configuration that are
	// probably mistakes, ordered by line. `guardian check` prints them and
	// the daemon logs them when it loads the configuration.
	Warnings []Warning `yaml:"-"`

	// checksum identifies the file and the secrets read while loading it.
	checksum string
}

// Global holds daemon-wide settings.
type Global struct {
	// EvaluationInterval is how often each service's triggers are evaluated (default 5s).
	EvaluationInterval Duration `yaml:"evaluation_interval"`
	// ExternalURL is the URL people reach Guardian at (behind a proxy,
	// say https://guardian.example.com/): messages, alerts, pages and the
	// post-mortem invite link to incidents, reports and the status page
	// under it. The --web.external-url flag overrides it; without either,
	// links use http://<listen address>.
	ExternalURL string `yaml:"external_url,omitempty"`
	// ListenAddress is the HTTP listen address (default 127.0.0.1:9095).
	ListenAddress string `yaml:"listen_address"`
	// StateDir holds durable state (default ./data). Unlike the *_file
	// fields, a relative state_dir is relative to the working directory, as
	// Prometheus's storage path is: a config file is often on a read-only
	// mount (a Kubernetes ConfigMap).
	StateDir string `yaml:"state_dir"`
	// QueryTimeout bounds each query (default 10s).
	QueryTimeout Duration `yaml:"query_timeout"`
	// SourceAlertAfter is how long a metric source (a named source, or a
	// service's own scrape) may fail for a transport reason (unavailable,
	// timeout) before the notifiers of the services using it are told that
	// it is unreachable, and told again once it answers (default 2m; 0 turns
	// it off).
	SourceAlertAfter Duration `yaml:"source_alert_after"`
	// Postmortem schedules the post-mortem of each resolved incident.
	Postmortem Postmortem `yaml:"postmortem"`
	// Auth configures bearer tokens for the write API.
	Auth Auth `yaml:"auth"`
	// Cluster, when set, runs Guardian as several replicas on Kubernetes:
	// state lives in ConfigMaps, and either one leader elected through a
	// Lease evaluates and acts for every service while the others forward
	// the write API to it, or (shards > 0) the services are split into
	// shards, each driven by the replica holding its own Lease, and the
	// write API is forwarded to the owner of the service.
	Cluster *Cluster `yaml:"cluster,omitempty"`
}

// Cluster configures leader election and in-cluster state.
type Cluster struct {
	// Kubeconfig is a kubeconfig file; empty means in-cluster credentials.
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
	// Namespace holds the Lease and the state ConfigMaps (default: the
	// POD_NAMESPACE environment variable).
	Namespace string `yaml:"namespace,omitempty"`
	// LeaseName names the Lease (default guardian).
	LeaseName string `yaml:"lease_name"`
	// Identity names this replica (default: POD_NAME, else the host name).
	Identity string `yaml:"identity,omitempty"`
	// AdvertiseURL is how the other replicas reach this one's API
	// (default http://$POD_IP:<listen port>).
	AdvertiseURL string `yaml:"advertise_url,omitempty"`
	// StatePrefix starts the names of the state ConfigMaps (default guardian).
	StatePrefix string `yaml:"state_prefix"`
	// LeaseDuration is how long followers wait before they take over a
	// Lease its leader stopped renewing (default 15s).
	LeaseDuration Duration `yaml:"lease_duration"`
	// RenewDeadline is how long the leader keeps trying to renew the Lease
	// before it steps down; shorter than LeaseDuration (default 10s).
	RenewDeadline Duration `yaml:"renew_deadline"`
	// RetryPeriod is the wait between two attempts to take or renew the
	// Lease; shorter than RenewDeadline (default 2s).
	RetryPeriod Duration `yaml:"retry_period"`
	// Shards, when above 0, splits the services into that many shards,
	// each owned through its own Lease (lease_name-shard-N): every replica
	// drives the services of the shards it holds, about 1/N of them with N
	// replicas, and a dead replica's shards pass to the others within
	// lease_duration. Every replica must use the same number. 0 (the
	// default) elects one leader that drives every service. About 20
	// shards per replica balance well: 64 for up to 3 replicas, 256 for 10.
	Shards int `yaml:"shards,omitempty"`
}

// Postmortem says when and with whom an incident's post-mortem is
// scheduled: an iCalendar invite written beside the report and announced
// with the postmortem.scheduled event.
type Postmortem struct {
	// Delay is how long after resolution the meeting may start at the
	// earliest (default 12h); the meeting then takes the next slot at At.
	Delay Duration `yaml:"delay"`
	// BusinessDays skips Saturdays and Sundays (default true).
	BusinessDays bool `yaml:"business_days"`
	// At is the local start time, "15:04" (default "10:00").
	At string `yaml:"at"`
	// TimeZone is an IANA zone such as Europe/Berlin (default UTC).
	TimeZone string `yaml:"time_zone"`
	// Duration is the meeting's length (default 1h).
	Duration Duration `yaml:"duration"`
	// Organizer and Attendees are email addresses ("Name <a@b.c>" works).
	Organizer string   `yaml:"organizer,omitempty"`
	Attendees []string `yaml:"attendees,omitempty"`
}

// Auth configures API authentication.
type Auth struct {
	// TokensFile holds one "name:token" or "name:token:scopes" per line
	// ('#' starts a comment); scopes are read, deploy, approve and admin,
	// none meaning all (see docs/http.md).
	// Without it the write API (deployments, approvals) refuses every request.
	// A relative path is resolved against the config file's directory; the
	// file must be readable at load time, and is read again by its user.
	TokensFile string `yaml:"tokens_file,omitempty"`
}

// Source is a named metric source shared by services. Exactly one source
// type (today only prometheus) must be set.
type Source struct {
	// Name identifies the source in a service's source: letters, digits,
	// '.', '_' and '-'.
	Name string `yaml:"name"`
	// Prometheus is a Prometheus-compatible HTTP API.
	Prometheus *PrometheusSource `yaml:"prometheus,omitempty"`
}

// PrometheusSource is a Prometheus-compatible HTTP API (Prometheus, Thanos,
// Mimir, VictoriaMetrics) with prometheus/common's HTTP client settings inline.
type PrometheusSource struct {
	// URL is the server's base URL, such as http://127.0.0.1:9090.
	URL string `yaml:"url"`
	// Timeout bounds each query (default 10s).
	Timeout Duration `yaml:"timeout"`
	// HTTPClientConfig carries basic auth, authorization, OAuth2, TLS, proxy
	// and custom headers such as X-Scope-OrgID. It defaults to
	// commoncfg.DefaultHTTPClientConfig (follow_redirects and enable_http2 on),
	// is validated at load time and its relative *_file paths are resolved
	// against the config file's directory.
	HTTPClientConfig commoncfg.HTTPClientConfig `yaml:",inline"`
}

// Scrape configures the embedded source: Guardian scrapes the service's
// /metrics itself and evaluates PromQL in process. It keeps only the series
// whose metric names the service's queries select (triggers, volume and
// sequential queries, deploy.version_query), for as long as they look back;
// all series when a query selects without a metric name, such as
// {job="checkout"}. guardian_embedded_series_dropped counts the others. A
// metric the queries read only as sums of rates or increases, such as
// sum by (version) (rate(http_requests_total{code=~"5.."}[2m])), is stored
// folded: the series no query tells apart (here, by method, or by one 5xx
// code from another) are kept as their sum, counter resets compensated;
// guardian_embedded_series counts the series stored.
type Scrape struct {
	// URL is the service's metrics endpoint, such as
	// http://127.0.0.1:8080/metrics. Scrapes keep one connection to it
	// alive, ask for an uncompressed body, and go through the proxy the
	// environment names (HTTP_PROXY, HTTPS_PROXY, NO_PROXY), if any.
	URL string `yaml:"url"`
	// Interval is the time between two scrapes (default 5s). The first
	// scrape is at start; the next ones fall at one of eight phases of
	// the interval, chosen from the URL, so that many services' scrapes
	// (and the evaluations that follow them) spread over it.
	Interval Duration `yaml:"interval"`
	// Timeout bounds each scrape; at most the interval (default: the
	// interval, at most 10s).
	Timeout Duration `yaml:"timeout"`
}

// Service is one guarded service. It needs at least one trigger.
type Service struct {
	// Name identifies the service: letters, digits, '.', '_' and '-'.
	Name string `yaml:"name"`
	// Source names an entry of sources; empty means the embedded source, which needs Scrape.
	Source string `yaml:"source,omitempty"`
	// Scrape configures the embedded source, which scrapes the service's
	// /metrics itself; it cannot be used with Source.
	Scrape *Scrape `yaml:"scrape,omitempty"`
	// Deploy says how fresh deploys of the service are learnt.
	Deploy Deploy `yaml:"deploy"`
	// WatchWindow is how long a fresh deploy is watched (default 30m).
	WatchWindow Duration `yaml:"watch_window"`
	// Triggers are the conditions judged for a fresh deploy; any one that
	// fires declares an incident. At least one is required.
	Triggers []Trigger `yaml:"triggers"`
	// Notify names entries of notifiers.
	Notify []string `yaml:"notify,omitempty"`
	// Responders are the people the service's incidents call on, by role:
	// every receiver mentions or pages them on declare, and the report and
	// the post-mortem invite name them.
	Responders []Responder `yaml:"responders,omitempty"`
	// Approval is the go/no-go policy for rolling back.
	Approval Approval `yaml:"approval"`
	// Recovery says when the service counts as recovered after a rollback.
	Recovery Recovery `yaml:"recovery"`
	// Rollback configures how the service is rolled back.
	Rollback Rollback `yaml:"rollback"`
	// Mode is enforce (default: incidents ask for the go/no-go and roll
	// back) or shadow (incidents are declared, notified and reported, but
	// Guardian asks nobody and runs no executor: it records what it would
	// have done). An incident keeps the mode it was declared with.
	Mode string `yaml:"mode,omitempty"`
}

// Service modes.
const (
	ModeEnforce = "enforce"
	ModeShadow  = "shadow"
)

// Rollback names the executors of the two steps: the application always
// first; the database only when the application rollback did not restore
// the service, and only with its own approval.
type Rollback struct {
	// Application rolls the application back; without it incidents are
	// declared and notified, but nothing is rolled back.
	Application *Executor `yaml:"application,omitempty"`
	// Database is the second step, run only when the application
	// rollback did not restore the service and someone approved it; it
	// needs application.
	Database *Executor `yaml:"database,omitempty"`
}

// Executor is exactly one rollback backend. Each type is configured here
// (executors.go, kubernetes.go) and built by its package under executor/.
type Executor struct {
	// Command runs a program (argv, no shell).
	Command *CommandExecutor `yaml:"command,omitempty"`
	// Webhook POSTs a signed JSON request to a deploy system.
	Webhook *WebhookExecutor `yaml:"webhook,omitempty"`
	// Kubernetes rolls a Deployment, StatefulSet or DaemonSet back to a
	// previous revision, or switches a blue-green Service back.
	Kubernetes *KubernetesExecutor `yaml:"kubernetes,omitempty"`
	// ArgoRollouts aborts (and optionally undoes) an Argo Rollout.
	ArgoRollouts *ArgoRolloutsExecutor `yaml:"argo_rollouts,omitempty"`
	// Helm rolls a Helm release back to an earlier revision.
	Helm *HelmExecutor `yaml:"helm,omitempty"`
}

// Name describes the executor for logs and the timeline.
func (e *Executor) Name() string {
	switch {
	case e == nil:
		return "none"
	case e.Command != nil && len(e.Command.Command) > 0:
		return "command " + e.Command.Command[0]
	case e.Webhook != nil:
		return "webhook"
	case e.Kubernetes != nil:
		return "kubernetes " + e.Kubernetes.Kind().String() + " " + e.Kubernetes.TargetName()
	case e.ArgoRollouts != nil:
		return "argo-rollouts " + e.ArgoRollouts.Rollout
	case e.Helm != nil:
		return "helm " + e.Helm.Release
	}
	return "none"
}

// Approval modes.
const (
	ApprovalManual    = "manual"
	ApprovalAuto      = "auto"
	ApprovalAutoAfter = "auto_after"
)

// Approval is a service's go/no-go policy. The database step always needs
// a human, whatever the mode.
type Approval struct {
	// Mode is manual (default: a human approves), auto (roll back at once)
	// or auto_after (wait Timeout for a human, then do OnTimeout).
	Mode string `yaml:"mode"`
	// Timeout is how long auto_after waits for a human.
	Timeout Duration `yaml:"timeout,omitempty"`
	// OnTimeout is rollback (default) or hold.
	OnTimeout string `yaml:"on_timeout,omitempty"`
	// SkipApprovalAbove, when set, rolls back without waiting when the
	// firing trigger's value is above it (an outage-class value).
	SkipApprovalAbove *float64 `yaml:"skip_approval_above,omitempty"`
	// SlackApprovers are the Slack users (U0123ABC) and user groups
	// (S0123ABC) who may give the go or no-go with the buttons of a Slack
	// message or the /guardian command; none means nobody in Slack may.
	SlackApprovers []string `yaml:"slack_approvers,omitempty"`
}

// Recovery says when a service is back after the application rollback.
type Recovery struct {
	// Tolerance is the relative distance to the baseline's value still
	// counted as recovered (default 0.1: within 10%); values under the
	// triggers' absolute thresholds count as recovered too.
	Tolerance float64 `yaml:"tolerance"`
	// StableFor is how long everything must hold (default 1m).
	StableFor Duration `yaml:"stable_for"`
	// Timeout is how long to wait for recovery before the database step or
	// escalation (default 15m).
	Timeout Duration `yaml:"timeout"`
	// Smoke checks must all pass.
	Smoke []Smoke `yaml:"smoke,omitempty"`
}

// Smoke is one HTTP smoke check.
type Smoke struct {
	// Name identifies the check in the timeline and the report (default:
	// the URL).
	Name string `yaml:"name,omitempty"`
	// Method is the request's HTTP method: GET, HEAD, POST, PUT or OPTIONS
	// (default GET).
	Method string `yaml:"method"`
	// URL is the absolute http or https URL requested.
	URL string `yaml:"url"`
	// ExpectStatus is the HTTP status the answer must have (default 200).
	ExpectStatus int `yaml:"expect_status"`
	// BodyContains, when set, is text the answer's body must contain.
	BodyContains string `yaml:"body_contains,omitempty"`
	// Timeout bounds the request (default 5s).
	Timeout Duration `yaml:"timeout"`
}

// Deploy configures how fresh deploys are learnt.
type Deploy struct {
	// VersionQuery returns one series per running version, labelled with
	// VersionLabel, whose value is its traffic. Optional: deploys can also be
	// announced through POST /api/v1/deployments.
	VersionQuery string `yaml:"version_query,omitempty"`
	// VersionLabel is the label naming the version (default "version").
	VersionLabel string `yaml:"version_label"`
	// MinTraffic is the value above which a version counts as serving (default 0: any positive value).
	MinTraffic float64 `yaml:"min_traffic"`
	// Kubernetes learns deploys from a Deployment's revisions.
	Kubernetes *KubernetesDeploy `yaml:"kubernetes,omitempty"`
}

// KubernetesDeploy watches a Deployment or an Argo Rollout: a new revision
// with a new pod template is a fresh deploy, the previous revision its
// baseline.
type KubernetesDeploy struct {
	// Kubeconfig is a kubeconfig file; empty means in-cluster credentials.
	Kubeconfig string `yaml:"kubeconfig,omitempty"`
	// Namespace is the workload's namespace.
	Namespace string `yaml:"namespace"`
	// Deployment or Rollout (exactly one) names the workload: a Deployment,
	// or an Argo Rollouts Rollout.
	Deployment string `yaml:"deployment,omitempty"`
	Rollout    string `yaml:"rollout,omitempty"`
	// VersionLabel is the pod-template label naming the version; empty
	// means the first container's image tag.
	VersionLabel string `yaml:"version_label,omitempty"`
	// OnProgressDeadline says what a fresh deploy whose rollout the
	// Deployment controller gives up on (Progressing condition
	// ProgressDeadlineExceeded: its pods never became ready) does:
	// "incident" (default) fires the built-in trigger ProgressDeadlineTrigger,
	// which declares an incident like any trigger (the approval policy
	// applies); "ignore" only logs it. Such pods take no traffic, so the
	// metric triggers never see the bad version.
	OnProgressDeadline string `yaml:"on_progress_deadline,omitempty"`
}

// Values of KubernetesDeploy.OnProgressDeadline.
const (
	OnProgressDeadlineIncident = "incident"
	OnProgressDeadlineIgnore   = "ignore"
)

// ProgressDeadlineTrigger is the name of the built-in trigger that fires
// when a watched Deployment's fresh rollout exceeds its progress deadline;
// no configured trigger may take it.
const ProgressDeadlineTrigger = "progress-deadline"

// Trigger is one condition judged for the freshly deployed version.
type Trigger struct {
	// Name identifies the trigger in incidents, metrics and logs: letters,
	// digits, '.', '_' and '-', unique within the service.
	Name string `yaml:"name"`
	// Query is a PromQL template yielding one value; it may use {{.Service}},
	// {{.Version}}, {{.Baseline}}, {{.Window}} and {{.SinceDeploy}}. It is
	// optional with Sequential, which then derives it (errors/requests),
	// and with Latency (histogram_quantile of its buckets at its highest
	// quantile); recovery checks and impact measurement use it.
	Query string `yaml:"query"`
	// Window is the value of {{.Window}} (default 1m).
	Window Duration `yaml:"window"`
	// Above, Below and AboveBaseline are the conditions; at least one is
	// required (or Sequential, or Latency) and all are ANDed. AboveBaseline compares the
	// new version's value with the baseline version's. With Sequential, only
	// Above may be set: it is the test's absolute limit on the error ratio.
	Above         *float64       `yaml:"above,omitempty"`
	Below         *float64       `yaml:"below,omitempty"`
	AboveBaseline *BaselineLimit `yaml:"above_baseline,omitempty"`
	// Sequential judges counts with an anytime-valid sequential test
	// instead of thresholds on Query's value.
	Sequential *Sequential `yaml:"sequential,omitempty"`
	// Latency judges the new version's latency histogram against the
	// baseline's with an anytime-valid test instead of thresholds on
	// Query's value; it cannot be combined with Sequential, the conditions
	// or min_requests.
	Latency *Latency `yaml:"latency,omitempty"`
	// For is how long a condition must hold before the trigger fires
	// (default 0: at once).
	For Duration `yaml:"for"`
	// MinRequests is the least traffic (VolumeQuery's value) for a verdict.
	MinRequests float64 `yaml:"min_requests,omitempty"`
	// VolumeQuery yields the sample size; required with MinRequests.
	VolumeQuery string `yaml:"volume_query,omitempty"`
	// OnNoData says what an empty query result means: ignore (default:
	// no verdict) or fire (a violation).
	OnNoData NoDataPolicy `yaml:"on_no_data"`
	// OnQueryError says what a failed query means: ignore (default: no
	// verdict) or fire (a violation).
	OnQueryError NoDataPolicy `yaml:"on_query_error"`
	// Severity labels the incidents the trigger declares (default SEV-1).
	Severity string `yaml:"severity"`
	// SlowerThan declares a latency trigger: it judges requests slower
	// than this duration (with Sequential, its errors query counts them,
	// e.g. a histogram's _count minus its le="0.5" bucket for 500ms). The
	// incident report then estimates slow requests instead of failed ones;
	// a threshold on a quantile counts no requests, so it gets no estimate.
	// Without it a trigger is an error trigger, unless its query takes a
	// quantile (histogram_quantile). It does not change a verdict.
	SlowerThan *Duration `yaml:"slower_than,omitempty"`
}

// Sequential configures a trigger's anytime-valid sequential test: the
// errors and requests of the new version since the deploy, against the
// baseline version's (over BaselineWindow before the deploy, plus since the
// deploy while it still serves) and, with the trigger's Above, against that
// absolute limit. The outcome is regressed (the trigger is violated),
// healthy (ok) or inconclusive (not enough evidence, never a violation);
// the probability of a false "regressed" over the whole watch is at most
// Alpha however often it is evaluated.
type Sequential struct {
	// Errors is a PromQL template yielding the count of failed (or slow)
	// requests since the deploy, e.g.
	// sum(increase(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.SinceDeploy}}])) or vector(0)
	// (a version without errors has no error series: the sum is empty, not
	// 0) or, for requests slower than 0.5 s (with the trigger's
	// slower_than: 500ms), a histogram's increase of _count minus that of
	// its le="0.5" bucket.
	Errors string `yaml:"errors"`
	// Requests is a PromQL template yielding the count of all requests
	// since the deploy.
	Requests string `yaml:"requests"`
	// Alpha is the false-rollback budget in (0, 0.5] (default 0.001).
	Alpha float64 `yaml:"alpha"`
	// MinEffect is the smallest regression worth acting on: a ratio above 1
	// ("1.5x", the default) or a difference of error ratios ("+0.01").
	MinEffect BaselineLimit `yaml:"min_effect"`
	// BaselineWindow is the period before the deploy whose baseline counts
	// the new version is compared with (default 30m).
	BaselineWindow Duration `yaml:"baseline_window"`
	// SlowBurn also runs a change detector on the new version's counts
	// between evaluations (default false): a test of all the data since the
	// deploy is diluted by the healthy start of a regression that begins
	// or grows after it, which the detector weighs separately for every
	// possible start. The trigger then regresses when either the test or
	// the detector alarms (healthy still comes from the test alone), and
	// alpha is split so that the total false-rollback probability stays at
	// most alpha: half to the test, a quarter to the detector and a quarter
	// to the bound on the baseline's error ratio it compares with (the
	// upper end of its confidence sequence); without a baseline, against
	// the trigger's above, half and half. Each part then needs a little
	// more evidence: regressions present from the deploy take 3-12% more
	// requests, slow burns at high traffic fewer (docs/benchmarks.md).
	SlowBurn bool `yaml:"slow_burn"`
}

// Latency configures a trigger's anytime-valid latency test: the new
// version's histogram bucket counts since the deploy against the baseline
// version's (over BaselineWindow before the deploy, plus since the deploy
// while it still serves). It decides regressed (the trigger is violated:
// the new version's latencies are slower, be it the whole distribution or
// only its tail), healthy (ok: at each guarded bound, the baseline's
// Quantiles, the new version's share of slower requests is below MinEffect
// times the baseline's) or inconclusive (not enough evidence, never a
// violation). The probability of a false "regressed" over the whole watch
// is at most Alpha however often it is evaluated.
type Latency struct {
	// Buckets is a PromQL template yielding the new version's histogram
	// bucket counts since the deploy, one series per le bucket, e.g.
	// sum by (le) (increase(http_request_duration_seconds_bucket{service="{{.Service}}",version="{{.Version}}"}[{{.SinceDeploy}}]))
	// or, for a native histogram (with a Prometheus source), one sample
	// holding it: sum(increase(http_request_duration_seconds{...}[{{.SinceDeploy}}])).
	Buckets string `yaml:"buckets"`
	// Alpha is the false-rollback budget in (0, 0.5] (default 0.001).
	Alpha float64 `yaml:"alpha"`
	// MinEffect is the largest regression a healthy version may have: a
	// ratio above 1 ("1.5x", the default) or a difference ("+0.01") of the
	// shares of requests slower than each guarded bound.
	MinEffect BaselineLimit `yaml:"min_effect"`
	// Quantiles are the baseline quantiles, each in (0, 1), whose bucket
	// bounds are guarded for the healthy decision (default [0.5, 0.9,
	// 0.99]); the highest is the quantile of the derived query.
	Quantiles []float64 `yaml:"quantiles"`
	// BaselineWindow is the period before the deploy whose baseline
	// histogram the new version is compared with (default 30m).
	BaselineWindow Duration `yaml:"baseline_window"`
}

// NoDataPolicy says what an empty result (or a failed query) means.
type NoDataPolicy string

// No-data policies.
const (
	PolicyIgnore NoDataPolicy = "ignore"
	PolicyFire   NoDataPolicy = "fire"
)

// BaselineLimit is a limit relative to the baseline version: a ratio ("2x")
// or a delta ("+0.02").
type BaselineLimit struct {
	Ratio float64 // > 0 when a ratio
	Delta float64 // used when Ratio == 0
	Text  string  // as written
}

// Notifier is a named receiver of incident events.
// Exactly one receiver must be set.
type Notifier struct {
	// Name identifies the notifier in a service's notify: letters, digits,
	// '.', '_' and '-'.
	Name string `yaml:"name"`
	// Webhook POSTs each event as signed JSON.
	Webhook *Webhook `yaml:"webhook,omitempty"`
	// Alertmanager posts each open incident as an alert.
	Alertmanager *AlertmanagerNotifier `yaml:"alertmanager,omitempty"`
	// Slack posts one message per incident and threads its updates.
	Slack *SlackNotifier `yaml:"slack,omitempty"`
	// PagerDuty pages through the Events API v2.
	PagerDuty *PagerDutyNotifier `yaml:"pagerduty,omitempty"`
	// Teams posts an Adaptive Card to a Microsoft Teams workflow.
	Teams *TeamsNotifier `yaml:"teams,omitempty"`
	// Statuspage keeps an incident on an Atlassian Statuspage page.
	Statuspage *StatuspageNotifier `yaml:"statuspage,omitempty"`
}

// Webhook is a generic signed JSON webhook receiver.
type Webhook struct {
	// URL receives the JSON events.
	URL string `yaml:"url"`
	// SecretFile holds the HMAC key signing each body (optional). A relative
	// path is resolved against the config file's directory; after loading it
	// is the resolved path.
	SecretFile string `yaml:"secret_file,omitempty"`
	// Secret is SecretFile's content with surrounding white space removed,
	// read at load time. It never appears in marshalled output.
	Secret commoncfg.Secret `yaml:"-"`
	// Templates override each event's text field with text (the body
	// keeps its shape); a title is an error, the body having none.
	Templates Templates `yaml:"templates,omitempty"`
}

// Duration is a time.Duration written as Prometheus writes durations ("30s", "1h30m", "2d").
type Duration time.Duration
