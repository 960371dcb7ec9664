package config

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"

	commoncfg "github.com/prometheus/common/config"

	"github.com/rollback-guardian/guardian/notify/tmpl"
)

// Defaults of the receivers.
const (
	DefaultAlertmanagerResend = Duration(60_000_000_000) // 1m
	DefaultSlackAPIURL        = "https://slack.com/api/"
	DefaultPagerDutyURL       = "https://events.pagerduty.com/v2/enqueue"
	DefaultStatuspageURL      = "https://api.statuspage.io/v1/"
)

// Templates override a receiver's text. Each is a Go text/template executed
// with the notification (notify.Event: .Type, .Service, .Text, .Data,
// .Links, .Responders ...); empty keeps the receiver's default. Title is
// one line (Slack's header, Teams' title, PagerDuty's summary, the alert's
// summary annotation); Text is the body.
type Templates struct {
	// Title replaces the one-line title.
	Title string `yaml:"title,omitempty"`
	// Text replaces the body.
	Text string `yaml:"text,omitempty"`
}

// AlertmanagerNotifier posts each open incident as a firing alert to the
// Alertmanager API v2 (POST /api/v2/alerts) of every URL (an HA pair gets
// each alert on every member), re-posts it while the incident stays open
// and resolves it when the incident ends.
type AlertmanagerNotifier struct {
	// URLs are the Alertmanagers' base URLs, such as http://alertmanager:9093.
	URLs []string `yaml:"urls"`
	// ResendInterval is how often an open incident's alert is posted again
	// (default 1m); it must stay below Alertmanager's resolve_timeout (5m
	// by default), and the alert's endsAt is four intervals ahead, as
	// Prometheus sets it.
	ResendInterval Duration `yaml:"resend_interval"`
	// Timeout bounds each post (default 10s).
	Timeout Duration `yaml:"timeout"`
	// Templates override the alert's summary (Title) and description
	// (Text) annotations.
	Templates Templates `yaml:"templates,omitempty"`
	// HTTPClientConfig carries basic auth, authorization, TLS and proxy
	// settings, as Prometheus's alerting configuration does.
	HTTPClientConfig commoncfg.HTTPClientConfig `yaml:",inline"`
}

func (a *AlertmanagerNotifier) setDefaults() {
	a.ResendInterval = DefaultAlertmanagerResend
	a.Timeout = Duration(10_000_000_000)
	a.HTTPClientConfig = commoncfg.DefaultHTTPClientConfig
}

// SlackNotifier posts one message per incident to a channel and keeps it
// up to date, with every transition as a reply in its thread. With a
// signing secret (interactivity at /api/v1/slack/interactions), the message
// carries go/no-go buttons that the service's approval.slack_approvers may
// use.
type SlackNotifier struct {
	// Channel is a channel ID (C0123ABC) or name (#deploys).
	Channel string `yaml:"channel"`
	// TokenFile holds the bot token (xoxb-...), with the chat:write scope.
	TokenFile string `yaml:"token_file"`
	// SigningSecretFile holds the app's signing secret: with it, Guardian
	// answers the buttons and the /guardian slash command at
	// POST /api/v1/slack/interactions and verifies every request.
	SigningSecretFile string `yaml:"signing_secret_file,omitempty"`
	// APIURL is Slack's Web API base URL (default https://slack.com/api/).
	APIURL string `yaml:"api_url"`
	// Templates override the message's header (Title) and body (Text).
	Templates Templates `yaml:"templates,omitempty"`

	// Token and SigningSecret are the files' contents, read at load time;
	// they never appear in marshalled output.
	Token         commoncfg.Secret `yaml:"-"`
	SigningSecret commoncfg.Secret `yaml:"-"`
}

func (s *SlackNotifier) setDefaults() { s.APIURL = DefaultSlackAPIURL }

// PagerDutyNotifier sends PagerDuty Events API v2 events: trigger on
// declare, acknowledge when a person decides, resolve when the incident
// ends; one dedup key per incident.
type PagerDutyNotifier struct {
	// RoutingKeyFile holds the integration's routing key (32 characters).
	RoutingKeyFile string `yaml:"routing_key_file"`
	// URL is the Events API endpoint (default
	// https://events.pagerduty.com/v2/enqueue).
	URL string `yaml:"url"`
	// Templates override the event's summary (Title; Text is unused).
	Templates Templates `yaml:"templates,omitempty"`

	// RoutingKey is the file's content, read at load time.
	RoutingKey commoncfg.Secret `yaml:"-"`
}

func (p *PagerDutyNotifier) setDefaults() { p.URL = DefaultPagerDutyURL }

// TeamsNotifier posts an Adaptive Card to a Microsoft Teams Workflows
// webhook ("Post to a channel when a webhook request is received").
type TeamsNotifier struct {
	// URLFile holds the workflow's URL, which carries its signature: it is
	// a secret.
	URLFile string `yaml:"url_file"`
	// Templates override the card's title and text.
	Templates Templates `yaml:"templates,omitempty"`

	// URL is the file's content, read at load time.
	URL commoncfg.Secret `yaml:"-"`
}

// StatuspageNotifier keeps an incident on an Atlassian Statuspage page per
// Guardian incident: created when the incident is declared, updated as it
// moves on (investigating, identified, monitoring, resolved), with the
// service's component marked degraded or in major outage, then operational.
type StatuspageNotifier struct {
	// PageID is the page's ID (Statuspage's page settings show it).
	PageID string `yaml:"page_id"`
	// APIKeyFile holds an API key of a user who may manage the page's
	// incidents.
	APIKeyFile string `yaml:"api_key_file"`
	// Components maps service names to the IDs of their components on
	// the page; a service without one gets incidents without components.
	Components map[string]string `yaml:"components,omitempty"`
	// URL is the REST API's base URL (default https://api.statuspage.io/v1/).
	URL string `yaml:"url"`
	// Templates override the incident's name (Title) and each update's
	// body (Text). The defaults say what stakeholders see in plain words,
	// without versions, triggers or queries.
	Templates Templates `yaml:"templates,omitempty"`

	// APIKey is the file's content, read at load time.
	APIKey commoncfg.Secret `yaml:"-"`
}

func (s *StatuspageNotifier) setDefaults() { s.URL = DefaultStatuspageURL }

// statuspageIDRE matches Statuspage page and component IDs.
var statuspageIDRE = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)

func (v *validator) statuspage(p string, s *StatuspageNotifier) {
	switch {
	case s.PageID == "":
		v.errorf(p+".page_id", "required")
	case !statuspageIDRE.MatchString(s.PageID):
		v.errorf(p+".page_id", "invalid page ID %q: want letters and digits", s.PageID)
	}
	s.APIKey, s.APIKeyFile = v.secretFile(p+".api_key_file", s.APIKeyFile, true)
	for _, svc := range slices.Sorted(maps.Keys(s.Components)) {
		if id := s.Components[svc]; !statuspageIDRE.MatchString(id) {
			v.errorf(p+".components."+svc, "invalid component ID %q: want letters and digits", id)
		}
	}
	v.httpURL(p+".url", s.URL)
	v.templates(p+".templates", s.Templates)
}

// statuspageComponents checks that the Statuspage receivers' components
// name defined services, and warns about a service told to such a
// receiver without a component.
func (v *validator) statuspageComponents(c *Config, services map[string]string) {
	if v.broken("services") {
		return
	}
	for i, n := range c.Notifiers {
		if n.Statuspage == nil {
			continue
		}
		p := fmt.Sprintf("notifiers[%d].statuspage", i)
		for _, svc := range slices.Sorted(maps.Keys(n.Statuspage.Components)) {
			if _, ok := services[svc]; !ok {
				v.errorf(p+".components."+svc, "undefined service %q", svc)
			}
		}
		for j, s := range c.Services {
			if slices.Contains(s.Notify, n.Name) && n.Statuspage.Components[s.Name] == "" {
				v.warnf(fmt.Sprintf("services[%d].notify", j), "service %q is told to Statuspage receiver %q without a component in %s.components: its incidents show on the page without one", s.Name, n.Name, p)
			}
		}
	}
}

// Responder is a person a service's incidents call on, by role.
type Responder struct {
	// Role is incident_commander, dba, on_call or another word of yours.
	Role string `yaml:"role"`
	// Name is how messages and the report name the person.
	Name string `yaml:"name"`
	// Email invites the person to the post-mortem ("a@b.c").
	Email string `yaml:"email,omitempty"`
	// Slack is a Slack user ID (U0123ABC) or user group ID (S0123ABC),
	// mentioned in the incident's Slack message.
	Slack string `yaml:"slack,omitempty"`
}

// Responder roles Guardian knows; others are allowed.
const (
	RoleIncidentCommander = "incident_commander"
	RoleDBA               = "dba"
	RoleOnCall            = "on_call"
)

func (v *validator) secretFile(p, file string, required bool) (commoncfg.Secret, string) {
	if file == "" {
		if required {
			v.errorf(p, "required")
		}
		return "", ""
	}
	path := commoncfg.JoinDir(v.dir, file)
	data, err := readSecret(path)
	switch {
	case err != nil:
		v.errorf(p, "cannot read %q: %s", file, reason(err))
	case strings.TrimSpace(string(data)) == "":
		v.errorf(p, "%q is empty", file)
	default:
		fmt.Fprintf(v.sum, "\x00%s\x00", path)
		v.sum.Write(data)
		return commoncfg.Secret(strings.TrimSpace(string(data))), path
	}
	return "", path
}

func (v *validator) templates(p string, t Templates) {
	for _, f := range []struct{ name, text string }{{"title", t.Title}, {"text", t.Text}} {
		if f.text == "" {
			continue
		}
		if _, err := tmpl.Parse(f.name, f.text); err != nil {
			v.errorf(p+"."+f.name, "%s", clip(err.Error()))
		}
	}
}

func (v *validator) alertmanager(p string, a *AlertmanagerNotifier) {
	if len(a.URLs) == 0 {
		v.errorf(p+".urls", "required: at least one Alertmanager URL")
	}
	for i, u := range a.URLs {
		v.httpURL(fmt.Sprintf("%s.urls[%d]", p, i), u)
	}
	v.positive(p+".resend_interval", a.ResendInterval)
	v.positive(p+".timeout", a.Timeout)
	v.templates(p+".templates", a.Templates)
	v.httpClient(p, &a.HTTPClientConfig)
}

func (v *validator) slack(p string, s *SlackNotifier) {
	if s.Channel == "" {
		v.errorf(p+".channel", "required: a channel ID (C0123ABC) or #name")
	}
	token := s.TokenFile
	s.Token, s.TokenFile = v.secretFile(p+".token_file", s.TokenFile, true)
	if s.Token != "" && !strings.HasPrefix(string(s.Token), "xoxb-") {
		v.errorf(p+".token_file", "%q does not hold a bot token (xoxb-...)", token)
	}
	s.SigningSecret, s.SigningSecretFile = v.secretFile(p+".signing_secret_file", s.SigningSecretFile, false)
	v.httpURL(p+".api_url", s.APIURL)
	v.templates(p+".templates", s.Templates)
}

func (v *validator) pagerduty(p string, d *PagerDutyNotifier) {
	file := d.RoutingKeyFile
	d.RoutingKey, d.RoutingKeyFile = v.secretFile(p+".routing_key_file", d.RoutingKeyFile, true)
	if k := string(d.RoutingKey); k != "" && len(k) != 32 {
		v.errorf(p+".routing_key_file", "%q holds %d characters: a PagerDuty routing key has 32", file, len(k))
	}
	v.httpURL(p+".url", d.URL)
	v.templates(p+".templates", d.Templates)
}

func (v *validator) teams(p string, t *TeamsNotifier) {
	file := t.URLFile
	t.URL, t.URLFile = v.secretFile(p+".url_file", t.URLFile, true)
	if t.URL != "" {
		if u, err := url.Parse(string(t.URL)); err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
			v.errorf(p+".url_file", "%q does not hold an http or https URL", file)
		}
	}
	v.templates(p+".templates", t.Templates)
}

func (v *validator) responders(p string, rs []Responder) {
	for i, r := range rs {
		rp := fmt.Sprintf("%s[%d]", p, i)
		if r.Role == "" {
			v.errorf(rp+".role", "required: incident_commander, dba, on_call or a word of yours")
		}
		if r.Name == "" {
			v.errorf(rp+".name", "required")
		}
		if r.Email != "" && !strings.Contains(r.Email, "@") {
			v.errorf(rp+".email", "invalid address %q", r.Email)
		}
		if r.Slack != "" && !slackIDRE.MatchString(r.Slack) {
			v.errorf(rp+".slack", "invalid Slack ID %q: want a user (U0123ABC, W0123ABC) or user group (S0123ABC) ID", r.Slack)
		}
	}
}

func (v *validator) externalURL(p, s string) {
	if s == "" {
		return
	}
	v.httpURL(p, s)
	if u, err := url.Parse(s); err == nil && (u.RawQuery != "" || u.Fragment != "") {
		v.errorf(p, "invalid URL %q: want no query or fragment", s)
	}
}
