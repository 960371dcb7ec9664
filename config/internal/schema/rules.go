package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/invopop/jsonschema"

	"github.com/rollback-guardian/guardian/config"
)

// Patterns of the names validation checks (config/validate.go, names.go,
// kubernetes.go, notifiers.go), with the same verdicts.
const (
	namePattern         = `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`
	labelNamePattern    = `^[A-Za-z_][A-Za-z0-9_]*$`
	slackIDPattern      = `^[UWS][A-Z0-9]{2,20}$`
	clusterNamePattern  = `^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`
	dns1123Label        = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	dns1123Subdomain    = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	dns1035Label        = `^[a-z]([-a-z0-9]*[a-z0-9])?$`
	statuspageIDPattern = `^[A-Za-z0-9]{1,64}$`
	// httpURLPattern: an absolute http or https URL (the scheme's case
	// does not matter to url.Parse).
	httpURLPattern = `^[Hh][Tt][Tt][Pp][Ss]?://.+`
	// clockPattern is what time.Parse("15:04", s) accepts.
	clockPattern = `^([01]?[0-9]|2[0-3]):[0-5][0-9]$`
)

// annotate adds to the reflected schema what reflection cannot see: the
// defaults, required keys, enums and patterns that the code checks, the
// rules that combine keys, and the examples. strict says whether the
// schema is for a whole file (see generator.schema).
func (g *generator) annotate(root *jsonschema.Schema, strict bool) error {
	var errs []error
	def := func(name string) *jsonschema.Schema {
		if name == "Config" {
			return root
		}
		d, ok := root.Definitions[name]
		if !ok {
			errs = append(errs, fmt.Errorf("no type %s in the schema", name))
			return &jsonschema.Schema{}
		}
		return d
	}
	prop := func(name, key string) *jsonschema.Schema {
		d := object(def(name))
		if d.Properties == nil {
			errs = append(errs, fmt.Errorf("%s is not an object", name))
			return &jsonschema.Schema{}
		}
		p, ok := d.Properties.Get(key)
		if !ok {
			errs = append(errs, fmt.Errorf("%s has no key %s", name, key))
			return &jsonschema.Schema{}
		}
		return p
	}
	// Keys the code requires, the rules that combine keys.
	required := func(name string, keys ...string) {
		if strict {
			d := object(def(name))
			d.Required = append(d.Required, keys...)
		}
	}
	rule := func(name string, s *jsonschema.Schema) {
		if strict {
			d := object(def(name))
			d.AllOf = append(d.AllOf, s)
		}
	}
	enum := func(name, key string, values ...string) {
		p := prop(name, key)
		for _, v := range values {
			p.Enum = append(p.Enum, v)
		}
	}
	pattern := func(name, key, re string) {
		p := prop(name, key)
		if p.Type == "array" {
			p = p.Items
		}
		p.Pattern = re
	}
	minItems := func(name, key string, n uint64) {
		if strict {
			prop(name, key).MinItems = &n
		}
	}
	maxLength := func(name, key string, n uint64) { prop(name, key).MaxLength = &n }
	minLength := func(name, key string, n uint64) { prop(name, key).MinLength = &n }

	for name, keys := range g.defaults {
		for k, v := range keys {
			prop(name, k).Default = v
		}
	}
	for name, t := range g.types {
		if t.Kind() != reflect.Struct || mapType(t) != nil || t == headersType {
			continue
		}
		for _, f := range yamlFields(t) {
			if v, ok := g.examples[f.owner.Name()][f.key]; ok {
				prop(name, f.key).Examples = []any{v}
			}
		}
	}

	// global
	pattern("Global", "external_url", httpURLPattern)
	pattern("Postmortem", "at", clockPattern)
	rule("Postmortem", &jsonschema.Schema{
		Description: "attendees need an organizer",
		If:          requiredWith([]string{"attendees"}, "attendees", &jsonschema.Schema{MinItems: ptr(uint64(1))}),
		Then:        &jsonschema.Schema{Required: []string{"organizer"}},
	})
	pattern("Cluster", "lease_name", clusterNamePattern)
	pattern("Cluster", "state_prefix", clusterNamePattern)
	pattern("Cluster", "advertise_url", httpURLPattern)
	shards := prop("Cluster", "shards")
	shards.Minimum, shards.Maximum = "0", json.Number(fmt.Sprint(config.MaxShards))

	// sources
	required("Source", "name", "prometheus")
	pattern("Source", "name", namePattern)
	required("PrometheusSource", "url")
	pattern("PrometheusSource", "url", httpURLPattern)
	pattern("AlertmanagerNotifier", "urls", httpURLPattern)
	required("OAuth2", "client_id", "token_url")

	// services
	required("Service", "name", "triggers")
	pattern("Service", "name", namePattern)
	minItems("Service", "triggers", 1)
	enum("Service", "mode", config.ModeEnforce, config.ModeShadow)
	rule("Service", &jsonschema.Schema{
		Description: "a metric source: source (a name from sources) or scrape (the embedded source), not both",
		OneOf:       []*jsonschema.Schema{{Required: []string{"source"}}, {Required: []string{"scrape"}}},
	})
	required("Scrape", "url")
	pattern("Scrape", "url", httpURLPattern)
	pattern("Deploy", "version_label", labelNamePattern)
	prop("Deploy", "min_traffic").Minimum = "0"
	required("KubernetesDeploy", "namespace")
	enum("KubernetesDeploy", "on_progress_deadline", config.OnProgressDeadlineIncident, config.OnProgressDeadlineIgnore)
	rule("KubernetesDeploy", &jsonschema.Schema{
		Description: "the workload: deployment or rollout, not both",
		OneOf:       []*jsonschema.Schema{{Required: []string{"deployment"}}, {Required: []string{"rollout"}}},
	})
	required("Responder", "role", "name")
	pattern("Responder", "slack", slackIDPattern)
	enum("Approval", "mode", config.ApprovalManual, config.ApprovalAuto, config.ApprovalAutoAfter)
	enum("Approval", "on_timeout", "rollback", "hold")
	pattern("Approval", "slack_approvers", slackIDPattern)
	rule("Approval", &jsonschema.Schema{
		Description: "timeout is required with mode auto_after, and timeout and on_timeout are only used with it",
		If:          requiredWith([]string{"mode"}, "mode", &jsonschema.Schema{Const: config.ApprovalAutoAfter}),
		Then:        &jsonschema.Schema{Required: []string{"timeout"}},
		Else:        &jsonschema.Schema{Not: &jsonschema.Schema{AnyOf: []*jsonschema.Schema{{Required: []string{"timeout"}}, {Required: []string{"on_timeout"}}}}},
	})
	p := prop("Recovery", "tolerance")
	p.Minimum, p.Maximum = "0", "10"
	required("Smoke", "url")
	pattern("Smoke", "name", namePattern)
	pattern("Smoke", "url", httpURLPattern)
	enum("Smoke", "method", "GET", "HEAD", "POST", "PUT", "OPTIONS")
	p = prop("Smoke", "expect_status")
	p.Minimum, p.Maximum = "100", "599"

	// triggers
	required("Trigger", "name")
	pattern("Trigger", "name", namePattern)
	minLength("Trigger", "severity", 1)
	prop("Trigger", "min_requests").Minimum = "0"
	rule("Trigger", &jsonschema.Schema{
		Description: "query is required without sequential or latency",
		AnyOf:       []*jsonschema.Schema{{Required: []string{"query"}}, {Required: []string{"sequential"}}, {Required: []string{"latency"}}},
	})
	rule("Trigger", &jsonschema.Schema{
		Description: "a condition: above, below, above_baseline, sequential or latency",
		AnyOf: []*jsonschema.Schema{
			{Required: []string{"above"}}, {Required: []string{"below"}},
			{Required: []string{"above_baseline"}}, {Required: []string{"sequential"}}, {Required: []string{"latency"}},
		},
	})
	rule("Trigger", &jsonschema.Schema{
		Description: "above, below, above_baseline, sequential, min_requests and volume_query cannot be used with latency",
		If:          &jsonschema.Schema{Required: []string{"latency"}},
		Then: &jsonschema.Schema{Not: &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			{Required: []string{"above"}}, {Required: []string{"below"}}, {Required: []string{"above_baseline"}},
			{Required: []string{"sequential"}},
			requiredWith([]string{"min_requests"}, "min_requests", &jsonschema.Schema{ExclusiveMinimum: "0"}),
			requiredWith([]string{"volume_query"}, "volume_query", &jsonschema.Schema{MinLength: ptr(uint64(1))}),
		}}},
	})
	rule("Trigger", &jsonschema.Schema{
		Description: "below, above_baseline and volume_query cannot be used with sequential",
		If:          &jsonschema.Schema{Required: []string{"sequential"}},
		Then: &jsonschema.Schema{Not: &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			{Required: []string{"below"}}, {Required: []string{"above_baseline"}},
			requiredWith([]string{"volume_query"}, "volume_query", &jsonschema.Schema{MinLength: ptr(uint64(1))}),
		}}},
	})
	rule("Trigger", &jsonschema.Schema{
		Description: "min_requests needs volume_query",
		If:          requiredWith([]string{"min_requests"}, "min_requests", &jsonschema.Schema{ExclusiveMinimum: "0"}),
		Then:        &jsonschema.Schema{Required: []string{"volume_query"}},
	})
	required("Latency", "buckets")
	p = prop("Latency", "alpha")
	p.ExclusiveMinimum, p.Maximum = "0", "0.5"
	prop("Latency", "quantiles").Items = &jsonschema.Schema{Type: "number", ExclusiveMinimum: "0", ExclusiveMaximum: "1"}
	required("Sequential", "errors", "requests")
	p = prop("Sequential", "alpha")
	p.ExclusiveMinimum, p.Maximum = "0", "0.5"

	// executors
	executors := []string{"command", "webhook", "kubernetes", "argo_rollouts", "helm"}
	rule("Executor", exactlyOne("an executor", executors...))
	required("CommandExecutor", "command")
	minItems("CommandExecutor", "command", 1)
	env := prop("CommandExecutor", "env")
	env.PropertyNames = &jsonschema.Schema{Pattern: `^[^=\x00]+$`, Not: &jsonschema.Schema{Pattern: "^GUARDIAN_"}}
	required("WebhookExecutor", "url")
	pattern("WebhookExecutor", "url", httpURLPattern)
	prop("WebhookExecutor", "max_attempts").Minimum = "0"
	for _, name := range []string{"KubernetesExecutor", "ArgoRolloutsExecutor", "HelmExecutor"} {
		pattern(name, "namespace", dns1123Label)
		maxLength(name, "namespace", 63)
		prop(name, "to_revision").Minimum = "0"
	}
	for _, key := range []string{"deployment", "statefulset", "daemonset"} {
		pattern("KubernetesExecutor", key, dns1123Subdomain)
		maxLength("KubernetesExecutor", key, 253)
	}
	rule("KubernetesExecutor", exactlyOne("a target", "deployment", "statefulset", "daemonset", "blue_green"))
	required("BlueGreen", "service")
	pattern("BlueGreen", "service", dns1035Label)
	maxLength("BlueGreen", "service", 63)
	rule("BlueGreen", &jsonschema.Schema{
		Description: "at most one of previous, values and value_template",
		Not: &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			{Required: []string{"previous", "values"}}, {Required: []string{"previous", "value_template"}},
			{Required: []string{"values", "value_template"}},
		}},
	})
	required("ArgoRolloutsExecutor", "rollout")
	pattern("ArgoRolloutsExecutor", "rollout", dns1123Subdomain)
	maxLength("ArgoRolloutsExecutor", "rollout", 253)
	required("HelmExecutor", "release")
	pattern("HelmExecutor", "release", dns1123Subdomain)
	maxLength("HelmExecutor", "release", 53)
	prop("HelmExecutor", "max_history").Minimum = "0"

	// notifiers
	required("Notifier", "name")
	pattern("Notifier", "name", namePattern)
	rule("Notifier", exactlyOne("a receiver", "webhook", "alertmanager", "slack", "pagerduty", "teams", "statuspage"))
	required("Webhook", "url")
	pattern("Webhook", "url", httpURLPattern)
	required("AlertmanagerNotifier", "urls")
	minItems("AlertmanagerNotifier", "urls", 1)
	required("SlackNotifier", "channel", "token_file")
	pattern("SlackNotifier", "api_url", httpURLPattern)
	required("PagerDutyNotifier", "routing_key_file")
	pattern("PagerDutyNotifier", "url", httpURLPattern)
	required("TeamsNotifier", "url_file")
	required("StatuspageNotifier", "page_id", "api_key_file")
	pattern("StatuspageNotifier", "page_id", statuspageIDPattern)
	prop("StatuspageNotifier", "components").AdditionalProperties.Pattern = statuspageIDPattern
	pattern("StatuspageNotifier", "url", httpURLPattern)

	// status page
	minLength("StatusPage", "title", 1)
	maxLength("StatusPage", "title", config.MaxStatusPageText)
	pattern("StatusPage", "external_url", httpURLPattern)
	maxLength("StatusPageService", "name", config.MaxStatusPageText)
	rule("StatusPageService", &jsonschema.Schema{
		Description: "name is required unless the service is hidden",
		AnyOf: []*jsonschema.Schema{
			{Required: []string{"name"}},
			requiredWith([]string{"hidden"}, "hidden", &jsonschema.Schema{Const: true}),
		},
	})
	required("Maintenance", "services", "start", "end")
	minItems("Maintenance", "services", 1)
	maxLength("Maintenance", "message", config.MaxStatusPageText)

	// The command executor's shorthand: the command list alone.
	cmd := root.Definitions["CommandExecutor"]
	obj := *cmd
	obj.Description = ""
	root.Definitions["CommandExecutor"] = &jsonschema.Schema{
		Description: cmd.Description,
		OneOf: []*jsonschema.Schema{
			{Type: "array", Items: &jsonschema.Schema{Type: "string"}, MinItems: ptr(uint64(1)), Description: "The shorthand: command alone."},
			&obj,
		},
	}

	if !strict {
		for key, p := range root.Properties.FromOldest() {
			root.Properties.Set(key, &jsonschema.Schema{
				Description: p.Description,
				AnyOf:       []*jsonschema.Schema{withoutDescription(p), {Type: "null"}},
			})
		}
	}
	return errors.Join(errs...)
}

// exactlyOne is the rule that exactly one of keys is set.
func exactlyOne(what string, keys ...string) *jsonschema.Schema {
	s := &jsonschema.Schema{Description: what + ": exactly one of " + list(keys)}
	for _, k := range keys {
		s.OneOf = append(s.OneOf, &jsonschema.Schema{Required: []string{k}})
	}
	return s
}

// list joins words as "a, b or c".
func list(words []string) string {
	if len(words) < 2 {
		return fmt.Sprint(words)
	}
	out := ""
	for i, w := range words {
		switch {
		case i == 0:
		case i == len(words)-1:
			out += " or "
		default:
			out += ", "
		}
		out += w
	}
	return out
}

// object is the object schema of a definition: itself, or the object
// variant of the command executor's.
func object(s *jsonschema.Schema) *jsonschema.Schema {
	if s.Properties == nil {
		if i := slices.IndexFunc(s.OneOf, func(v *jsonschema.Schema) bool { return v.Properties != nil }); i >= 0 {
			return s.OneOf[i]
		}
	}
	return s
}

// requiredWith is the schema of an object that has the keys, key's value
// matching s.
func requiredWith(keys []string, key string, s *jsonschema.Schema) *jsonschema.Schema {
	c := &jsonschema.Schema{Required: keys, Properties: jsonschema.NewProperties()}
	c.Properties.Set(key, s)
	return c
}

func withoutDescription(s *jsonschema.Schema) *jsonschema.Schema {
	c := *s
	c.Description = ""
	return &c
}

func ptr[T any](v T) *T { return &v }
