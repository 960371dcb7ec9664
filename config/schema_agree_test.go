package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/rollback-guardian/guardian/config"
)

// compiled is config/schema.json, compiled once.
var compiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	f, err := os.Open("schema.json")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("schema.json")
})

// validate checks a YAML document against the schema, as an editor or
// Helm would: the document read into plain values, then as JSON.
func validate(t *testing.T, data []byte) error {
	t.Helper()
	s, err := compiled()
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	b, err := json.Marshal(plainJSON(doc))
	if err != nil {
		return err // NaN or Inf, which JSON cannot hold
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(v)
}

// plainJSON turns decoded YAML into values encoding/json can write:
// mapping keys as strings, timestamps as RFC 3339.
func plainJSON(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = plainJSON(x)
		}
		return v
	case map[any]any:
		m := map[string]any{}
		for k, x := range v {
			m[fmt.Sprint(k)] = plainJSON(x)
		}
		return m
	case []any:
		for i, x := range v {
			v[i] = plainJSON(x)
		}
		return v
	case time.Time:
		return v.Format(time.RFC3339Nano)
	}
	return v
}

// errorAt reports whether err is a validation error at the instance
// location loc ("/services/0/mode"), or under it.
func errorAt(err error, loc string) bool {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return false
	}
	var walk func(e *jsonschema.ValidationError) bool
	walk = func(e *jsonschema.ValidationError) bool {
		p := ""
		for _, s := range e.InstanceLocation {
			p += "/" + s
		}
		if p == loc && len(e.Causes) == 0 {
			return true
		}
		for _, c := range e.Causes {
			if walk(c) {
				return true
			}
		}
		return false
	}
	return walk(ve)
}

// The tests below check that the schema agrees with the parser: on the
// repository's configurations, on configurations the parser refuses, on
// every key and on every default.

// goodConfigs are configurations the parser accepts.
func goodConfigs(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"../examples/*.yaml", "../config.yaml", "testdata/good/*.yml", "testdata/*.warn.yml", "testdata/*.good.yml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 20 {
		t.Fatalf("only %d configurations: %v", len(files), files)
	}
	return files
}

// TestSchemaAcceptsGoodConfigs: every example, the documented config.yaml
// and the test configurations the parser accepts are valid for the schema.
func TestSchemaAcceptsGoodConfigs(t *testing.T) {
	for _, f := range goodConfigs(t) {
		t.Run(f, func(t *testing.T) {
			if _, _, err := config.LoadFile(f); err != nil && config.SlimTags() == "" {
				t.Fatalf("the parser refuses it: %v", err)
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate(t, data); err != nil {
				t.Fatalf("the schema refuses it: %v", err)
			}
		})
	}
}

// TestSchemaRejectsBadConfigs: configurations the parser refuses for a
// reason the schema can see are refused by the schema too, at the same
// place.
func TestSchemaRejectsBadConfigs(t *testing.T) {
	const service = `
services:
  - name: checkout
    scrape: {url: "http://127.0.0.1:8080/metrics"}
    triggers:
      - {name: errors, query: up, above: 1}
`
	for _, tc := range []struct {
		name string
		yaml string // a document, or a testdata file
		at   string // where the schema says what is wrong
	}{
		{"unknown top-level key", service + "bogus: 1\n", ""},
		{"unknown global key", "global: {bogus: 1}\n" + service, "/global"},
		{"unknown trigger key", strings.Replace(service, "above: 1}", "above: 1, abovee: 2}", 1), "/services/0/triggers/0"},
		{"unknown HTTP client key", service + "sources: [{name: p, prometheus: {url: 'http://p:9090', tls_config: {bogus: true}}}]\n", "/sources/0/prometheus/tls_config"},
		{"unknown executor", strings.Replace(service, "triggers:", "rollback: {application: {kubectl: {}}}\n    triggers:", 1), "/services/0/rollback/application"},
		{"bad service mode", strings.Replace(service, "triggers:", "mode: dry-run\n    triggers:", 1), "/services/0/mode"},
		{"bad approval mode", strings.Replace(service, "triggers:", "approval: {mode: sometimes}\n    triggers:", 1), "/services/0/approval/mode"},
		{"bad on_no_data", strings.Replace(service, "above: 1}", "above: 1, on_no_data: alert}", 1), "/services/0/triggers/0/on_no_data"},
		{"bad TLS version", service + "sources: [{name: p, prometheus: {url: 'http://p:9090', tls_config: {min_version: TLS9}}}]\n", "/sources/0/prometheus/tls_config/min_version"},
		{"bad duration", strings.Replace(service, "above: 1}", "above: 1, for: 5 minutes}", 1), "/services/0/triggers/0/for"},
		{"a number for a list", "services: 3\n", "/services"},
		{"two executors", strings.Replace(service, "triggers:", "rollback: {application: {webhook: {url: 'http://d/'}, command: [x]}}\n    triggers:", 1), "/services/0/rollback/application"},
		{"no trigger", "services: [{name: a, scrape: {url: 'http://a/metrics'}, triggers: []}]\n", "/services/0/triggers"},
		{"file: unknown-field-top.bad.yml", "testdata/unknown-field-top.bad.yml", ""},
		{"file: unknown-field-nested.bad.yml", "testdata/unknown-field-nested.bad.yml", ""},
		{"file: unknown-field-http-client.bad.yml", "testdata/unknown-field-http-client.bad.yml", ""},
		{"file: sequential-unknown-field.bad.yml", "testdata/sequential-unknown-field.bad.yml", ""},
		{"file: bad-approval-mode.bad.yml", "testdata/bad-approval-mode.bad.yml", ""},
		{"file: bad-service-mode.bad.yml", "testdata/bad-service-mode.bad.yml", ""},
		{"file: bad-on-no-data.bad.yml", "testdata/bad-on-no-data.bad.yml", ""},
		{"file: bad-on-timeout.bad.yml", "testdata/bad-on-timeout.bad.yml", ""},
		{"file: deploy-bad-on-progress-deadline.bad.yml", "testdata/deploy-bad-on-progress-deadline.bad.yml", ""},
		{"file: bad-duration.bad.yml", "testdata/bad-duration.bad.yml", ""},
		{"file: cluster-bad-shards.bad.yml", "testdata/cluster-bad-shards.bad.yml", ""},
		{"file: negative-watch-window.bad.yml", "testdata/negative-watch-window.bad.yml", ""},
		{"file: bad-baseline.bad.yml", "testdata/bad-baseline.bad.yml", ""},
		{"file: bad-name.bad.yml", "testdata/bad-name.bad.yml", ""},
		{"file: missing-name.bad.yml", "testdata/missing-name.bad.yml", ""},
		{"file: missing-prometheus-url.bad.yml", "testdata/missing-prometheus-url.bad.yml", ""},
		{"file: bad-prometheus-url.bad.yml", "testdata/bad-prometheus-url.bad.yml", ""},
		{"file: bad-scrape-url.bad.yml", "testdata/bad-scrape-url.bad.yml", ""},
		{"file: bad-smoke-url.bad.yml", "testdata/bad-smoke-url.bad.yml", ""},
		{"file: wrong-type-list.bad.yml", "testdata/wrong-type-list.bad.yml", ""},
		{"file: wrong-type-number.bad.yml", "testdata/wrong-type-number.bad.yml", ""},
		{"file: no-triggers.bad.yml", "testdata/no-triggers.bad.yml", ""},
		{"file: no-condition.bad.yml", "testdata/no-condition.bad.yml", ""},
		{"file: no-source-no-scrape.bad.yml", "testdata/no-source-no-scrape.bad.yml", ""},
		{"file: source-and-scrape.bad.yml", "testdata/source-and-scrape.bad.yml", ""},
		{"file: source-no-type.bad.yml", "testdata/source-no-type.bad.yml", ""},
		{"file: notifier-no-receiver.bad.yml", "testdata/notifier-no-receiver.bad.yml", ""},
		{"file: receivers.bad.yml", "testdata/receivers.bad.yml", ""},
		{"file: rollback-no-executor.bad.yml", "testdata/rollback-no-executor.bad.yml", ""},
		{"file: rollback-helm-bad.bad.yml", "testdata/rollback-helm-bad.bad.yml", ""},
		{"file: rollback-bad-webhook-url.bad.yml", "testdata/rollback-bad-webhook-url.bad.yml", ""},
		{"file: deploy-kubernetes-both.bad.yml", "testdata/deploy-kubernetes-both.bad.yml", ""},
		{"file: auto-after-no-timeout.bad.yml", "testdata/auto-after-no-timeout.bad.yml", ""},
		{"file: min-requests-no-volume.bad.yml", "testdata/min-requests-no-volume.bad.yml", ""},
		{"file: sequential-bad-alpha.bad.yml", "testdata/sequential-bad-alpha.bad.yml", ""},
		{"file: sequential-zero-alpha.bad.yml", "testdata/sequential-zero-alpha.bad.yml", ""},
		{"file: sequential-alpha-not-number.bad.yml", "testdata/sequential-alpha-not-number.bad.yml", ""},
		{"file: sequential-min-effect-syntax.bad.yml", "testdata/sequential-min-effect-syntax.bad.yml", ""},
		{"file: sequential-missing-errors.bad.yml", "testdata/sequential-missing-errors.bad.yml", ""},
		{"file: sequential-missing-requests.bad.yml", "testdata/sequential-missing-requests.bad.yml", ""},
		{"file: sequential-with-below.bad.yml", "testdata/sequential-with-below.bad.yml", ""},
		{"file: sequential-with-above-baseline.bad.yml", "testdata/sequential-with-above-baseline.bad.yml", ""},
		{"file: sequential-with-min-requests.bad.yml", "testdata/sequential-with-min-requests.bad.yml", ""},
		{"file: status-page.bad.yml", "testdata/status-page.bad.yml", ""},
		{"file: statuspage-receiver.bad.yml", "testdata/statuspage-receiver.bad.yml", ""},
		{"file: empty.bad.yml", "testdata/empty.bad.yml", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.yaml)
			if f, ok := strings.CutPrefix(tc.name, "file: "); ok {
				var err error
				if data, err = os.ReadFile(filepath.Join("testdata", f)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := config.Parse(data); err == nil {
				t.Fatal("the parser accepts it")
			}
			err := validate(t, data)
			if err == nil {
				t.Fatal("the schema accepts it")
			}
			if tc.at != "" && !errorAt(err, tc.at) {
				t.Fatalf("the schema's error is not at %s: %v", tc.at, err)
			}
		})
	}
}

// schemaDoc is config/schema.json as plain values.
func schemaDoc(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// resolve follows a schema's $ref into the root's $defs.
func resolve(root, s map[string]any) map[string]any {
	for {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		s = root["$defs"].(map[string]any)[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
	}
}

// objectOf returns the keys of an object schema (the object variant of
// the command executor's), or nil when s is not an object with keys.
func objectOf(root, s map[string]any) map[string]any {
	s = resolve(root, s)
	if one, ok := s["oneOf"].([]any); ok && s["properties"] == nil {
		for _, v := range one {
			if p, ok := v.(map[string]any)["properties"]; ok {
				return p.(map[string]any)
			}
		}
	}
	p, _ := s["properties"].(map[string]any)
	if len(p) == 0 {
		return nil
	}
	return p
}

// fill builds a value for schema s with every key set: the examples of
// the keys, objects filled in turn.
func fill(root, s map[string]any) any {
	if props := objectOf(root, s); props != nil {
		m := map[string]any{}
		for k, p := range props {
			m[k] = fill(root, p.(map[string]any))
		}
		return m
	}
	if ex, ok := s["examples"].([]any); ok && len(ex) > 0 {
		return ex[0]
	}
	s = resolve(root, s)
	if items, ok := s["items"].(map[string]any); ok {
		return []any{fill(root, items)}
	}
	if ap, ok := s["additionalProperties"].(map[string]any); ok {
		return map[string]any{"key": fill(root, ap)}
	}
	if e, ok := s["enum"].([]any); ok {
		return e[0]
	}
	if alts, ok := s["anyOf"].([]any); ok {
		return fill(root, alts[0].(map[string]any))
	}
	switch s["type"] {
	case "number", "integer":
		return 1
	case "boolean":
		return true
	}
	return "x"
}

// objectNode is a place in a document where the schema has an object.
type objectNode struct {
	path, loc string         // the parser's field path, the schema's instance location
	m         map[string]any // the object in the document
}

// objects lists the objects of doc, which follows schema s.
func objects(root, s map[string]any, v any, path, loc string) []objectNode {
	var out []objectNode
	s = resolve(root, s)
	switch v := v.(type) {
	case map[string]any:
		if props := objectOf(root, s); props != nil {
			out = append(out, objectNode{path, loc, v})
			for k, x := range v {
				if p, ok := props[k].(map[string]any); ok {
					out = append(out, objects(root, p, x, strings.TrimPrefix(path+"."+k, "."), loc+"/"+k)...)
				}
			}
		} else if ap, ok := s["additionalProperties"].(map[string]any); ok {
			for k, x := range v {
				out = append(out, objects(root, ap, x, path+"."+k, loc+"/"+k)...)
			}
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, x := range v {
				out = append(out, objects(root, items, x, fmt.Sprintf("%s[%d]", path, i), fmt.Sprintf("%s/%d", loc, i))...)
			}
		}
	}
	return out
}

// TestSchemaKeysAreTheParsersKeys: a configuration setting every key of
// the schema, each with its example, has no key the parser does not know
// and no value of a type it refuses; and an unknown key in any of its
// objects is refused by both, at the same place.
func TestSchemaKeysAreTheParsersKeys(t *testing.T) {
	root := schemaDoc(t)
	doc := fill(root, root).(map[string]any)
	data, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = config.Parse(data)
	var errs config.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want config.Errors (secrets and cross-references cannot all hold), got %v", err)
	}
	if len(errs) > config.MaxErrors {
		t.Fatalf("%d errors: some are not shown", len(errs))
	}
	for _, e := range errs {
		if e.Msg == "unknown field" || strings.HasPrefix(e.Msg, "want a") { // "want a list, got ..."
			t.Errorf("%v", e)
		}
	}

	nodes := objects(root, root, doc, "", "")
	if len(nodes) < 40 {
		t.Fatalf("only %d objects in the document", len(nodes))
	}
	for _, n := range nodes {
		t.Run("at /"+strings.TrimPrefix(n.loc, "/"), func(t *testing.T) {
			n.m["bogus_key"] = 1
			defer delete(n.m, "bogus_key")
			data, err := yaml.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			want := strings.TrimPrefix(n.path+".bogus_key", ".")
			_, err = config.Parse(data)
			var errs config.Errors
			errors.As(err, &errs)
			if !slices.ContainsFunc(errs, func(e *config.FieldError) bool { return e.Path == want && e.Msg == "unknown field" }) {
				t.Errorf("the parser does not refuse %s: %v", want, err)
			}
			if err := validate(t, data); !errorAt(err, n.loc) {
				t.Errorf("the schema does not refuse %s at %s: %v", want, n.loc, err)
			}
		})
	}
}

// defaultsConfig sets every object that has defaults, with only what
// validation requires: the loader fills in the rest.
const defaultsConfig = `
global:
  cluster: {namespace: guardian}
sources:
  - name: prom
    prometheus: {url: "http://prometheus:9090"}
services:
  - name: a
    scrape: {url: "http://a:8080/metrics"}
    deploy:
      kubernetes: {namespace: shop, deployment: a}
    triggers:
      - {name: value, query: up, above: 1}
      - name: test
        sequential: {errors: sum(errors), requests: sum(requests)}
    approval: {mode: auto_after, timeout: 5m}
    recovery:
      smoke: [{url: "http://a:8080/healthz"}]
    rollback:
      application:
        kubernetes: {blue_green: {service: a}}
      database:
        helm: {release: a}
  - name: b
    source: prom
    triggers: [{name: value, query: up, above: 1}]
    rollback:
      application:
        command: {command: [rollback]}
  - name: c
    source: prom
    triggers: [{name: value, query: up, above: 1}]
    rollback:
      application:
        webhook: {url: "http://deployer:8080/rollback"}
  - name: d
    source: prom
    triggers: [{name: value, query: up, above: 1}]
    rollback:
      application:
        argo_rollouts: {rollout: d}
notifiers:
  - {name: webhook, webhook: {url: "http://hooks:8080/"}}
  - {name: alertmanager, alertmanager: {urls: ["http://alertmanager:9093"]}}
  - {name: slack, slack: {channel: C0123ABC, token_file: slack-token}}
  - {name: pagerduty, pagerduty: {routing_key_file: pagerduty-key}}
  - {name: teams, teams: {url_file: teams-url}}
  - {name: statuspage, statuspage: {page_id: abc123, api_key_file: statuspage-key}}
status_page:
  services: {a: {name: A}}
  maintenance: [{services: [a], start: "2026-12-05T22:00:00Z", end: "2026-12-05T23:00:00Z"}]
`

// derived are the keys the loader fills in from other keys, which no
// default in the schema can state.
var derived = map[string]bool{
	"services[0].scrape.timeout":         true, // the interval, at most 10s
	"services[0].recovery.smoke[0].name": true, // the URL
}

// TestSchemaDefaultsAreTheLoaders: every default in the schema is what the
// loader sets for a key left out, and every key the loader sets is a
// default of the schema (or derived from another key).
func TestSchemaDefaultsAreTheLoaders(t *testing.T) {
	if config.SlimTags() != "" {
		t.Skip("a slim build refuses the Kubernetes keys of the configuration")
	}
	dir := t.TempDir()
	for name, content := range map[string]string{
		"slack-token": "xoxb-0123", "pagerduty-key": strings.Repeat("k", 32),
		"teams-url": "https://teams.example.com/workflow", "statuspage-key": "key",
		"config.yaml": defaultsConfig,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, _, err := config.LoadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var in, out map[string]any
	if err := yaml.Unmarshal([]byte(defaultsConfig), &in); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(cfg.String()), &out); err != nil {
		t.Fatal(err)
	}
	root := schemaDoc(t)
	checked := 0
	var walk func(s map[string]any, in, out any, path string)
	walk = func(s map[string]any, in, out any, path string) {
		s = resolve(root, s)
		switch out := out.(type) {
		case map[string]any:
			inm, _ := in.(map[string]any)
			props := objectOf(root, s)
			if props == nil {
				if ap, ok := s["additionalProperties"].(map[string]any); ok {
					for k, v := range out {
						walk(ap, inm[k], v, path+"."+k)
					}
				}
				return
			}
			for k, p := range props {
				p := p.(map[string]any)
				kp := strings.TrimPrefix(path+"."+k, ".")
				v, written := inm[k]
				got, set := out[k]
				def, hasDefault := p["default"]
				switch {
				case written:
					walk(p, v, got, kp)
				case hasDefault && k == "on_timeout" && out["mode"] != "auto_after":
					// Only used, and defaulted, with mode auto_after.
				case hasDefault:
					checked++
					if fmt.Sprint(got) != fmt.Sprint(def) {
						t.Errorf("%s: the schema's default is %v, the loader sets %v", kp, def, got)
					}
				case set && !zero(got) && objectOf(root, p) == nil && !derived[kp]:
					t.Errorf("%s: the loader sets %v, a default the schema does not state", kp, got)
				default:
					walk(p, nil, got, kp)
				}
			}
		case []any:
			ins, _ := in.([]any)
			items, _ := s["items"].(map[string]any)
			for i, v := range out {
				var x any
				if i < len(ins) {
					x = ins[i]
				}
				if items != nil {
					walk(items, x, v, fmt.Sprintf("%s[%d]", path, i))
				}
			}
		}
	}
	walk(root, in, out, "")
	if checked < 40 {
		t.Fatalf("only %d defaults checked", checked)
	}
}

// zero reports whether a decoded YAML value is empty.
func zero(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case string:
		return v == "" || v == "0s" // a duration of 0
	case bool:
		return !v
	case int:
		return v == 0
	case float64:
		return v == 0
	case map[string]any:
		for _, x := range v {
			if !zero(x) {
				return false
			}
		}
		return true
	case []any:
		return len(v) == 0
	}
	return false
}

// keyPointers lists the JSON pointers of the schema's keys ("#/$defs/Trigger/properties/for").
func keyPointers(root map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	add := func(ptr string, s map[string]any) {
		for _, o := range []string{"", "/oneOf/1"} { // the command executor's object variant
			obj := s
			if o != "" {
				one, ok := s["oneOf"].([]any)
				if !ok || len(one) < 2 {
					continue
				}
				obj = one[1].(map[string]any)
			}
			props, _ := obj["properties"].(map[string]any)
			for k, p := range props {
				out[ptr+o+"/properties/"+k] = p.(map[string]any)
			}
		}
	}
	add("#", root)
	for name, d := range root["$defs"].(map[string]any) {
		add("#/$defs/"+name, d.(map[string]any))
	}
	return out
}

// TestSchemaDescribesEveryKey: every key has a description, and every key
// whose value is not an object has an example (the keys that name a
// secret in a secret manager, which Guardian does not support, aside).
func TestSchemaDescribesEveryKey(t *testing.T) {
	root := schemaDoc(t)
	keys := keyPointers(root)
	if len(keys) < 200 {
		t.Fatalf("only %d keys", len(keys))
	}
	for ptr, p := range keys {
		desc, _ := p["description"].(string)
		if desc == "" {
			t.Errorf("%s: no description", ptr)
		}
		if strings.Contains(desc, "Default") && regexp.MustCompile(`\bDefault[A-Z]`).MatchString(desc) {
			t.Errorf("%s: the description names a Go constant: %s", ptr, desc)
		}
		_, hasExample := p["examples"]
		isObject := objectOf(root, p) != nil
		if items, ok := p["items"].(map[string]any); ok && objectOf(root, items) != nil {
			isObject = true
		}
		if ap, ok := resolve(root, p)["additionalProperties"].(map[string]any); ok && objectOf(root, ap) != nil {
			isObject = true
		}
		if !hasExample && !isObject && !strings.HasPrefix(desc, "Not supported") {
			t.Errorf("%s: no example", ptr)
		}
	}
}

// TestSchemaExamplesAreValid: every key's example and default is valid
// for the key's schema.
func TestSchemaExamplesAreValid(t *testing.T) {
	root := schemaDoc(t)
	f, err := os.Open("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	n := 0
	for ptr, p := range keyPointers(root) {
		examples, _ := p["examples"].([]any)
		for _, v := range append(examples, p["default"]) {
			if v == nil {
				continue
			}
			s, err := c.Compile("schema.json" + ptr)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(v)
			x, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(x); err != nil {
				t.Errorf("%s: %v is not valid: %v", ptr, v, err)
			}
			n++
		}
	}
	if n < 200 {
		t.Fatalf("only %d examples and defaults", n)
	}
}

// TestSchemaModelines: config.yaml and the examples start with the YAML
// language server's modeline, pointing at config/schema.json.
func TestSchemaModelines(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := filepath.Abs("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range append(files, "../config.yaml") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		rel, ok := strings.CutPrefix(line, "# yaml-language-server: $schema=")
		if !ok || filepath.IsAbs(rel) {
			t.Errorf("%s starts with %q, not a modeline with a relative path", f, line)
			continue
		}
		if got, _ := filepath.Abs(filepath.Join(filepath.Dir(f), rel)); got != want {
			t.Errorf("%s: the modeline points at %s, not %s", f, got, want)
		}
	}
}
