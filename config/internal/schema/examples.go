package schema

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"time"

	"go.yaml.in/yaml/v3"
)

// examples finds an example value for each key, by the Go type declaring
// it (HTTPClientConfig for the HTTP client settings inlined in several
// types) and key: the first value written for it in the example
// configurations (examples/*.yaml, in name order), else one of
// extraExamples. Values of keys whose type has keys of its own (a trigger,
// a TLS configuration) are not examples: their keys are.
func examples(root string) (map[string]map[string]any, error) {
	files, err := filepath.Glob(filepath.Join(root, "examples", "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	out := map[string]map[string]any{}
	record := func(def, key string, v any) {
		if out[def] == nil {
			out[def] = map[string]any{}
		}
		if _, ok := out[def][key]; !ok {
			out[def][key] = v
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w", relPath(root, f), err)
		}
		if len(doc.Content) == 0 {
			continue
		}
		if err := walkExample(doc.Content[0], configType, record); err != nil {
			return nil, fmt.Errorf("%s: %w", relPath(root, f), err)
		}
	}
	for def, keys := range extraExamples {
		for k, v := range keys {
			record(def, k, v)
		}
	}
	return out, nil
}

// walkExample records the values of the mapping n, decoded into struct
// type t.
func walkExample(n *yaml.Node, t reflect.Type, record func(def, key string, v any)) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a mapping for %s", n.Line, t.Name())
	}
	fields := map[string]yamlField{}
	for _, f := range yamlFields(t) {
		fields[f.key] = f
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		f, ok := fields[k.Value]
		if !ok {
			return fmt.Errorf("line %d: %s has no key %s", k.Line, t.Name(), k.Value)
		}
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		ft := f.typ
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == headersType && v.Kind == yaml.MappingNode:
			for j := 1; j < len(v.Content); j += 2 {
				if err := walkExample(v.Content[j], headerType, record); err != nil {
					return err
				}
			}
			fallthrough
		default:
			var x any
			if err := v.Decode(&x); err != nil {
				return fmt.Errorf("line %d: %w", v.Line, err)
			}
			record(f.owner.Name(), f.key, jsonable(x))
		case objectType(ft) && v.Kind == yaml.MappingNode:
			if err := walkExample(v, ft, record); err != nil {
				return err
			}
		case ft.Kind() == reflect.Slice && objectType(ft.Elem()):
			for _, item := range v.Content {
				if err := walkExample(item, ft.Elem(), record); err != nil {
					return err
				}
			}
		case ft.Kind() == reflect.Map && objectType(ft.Elem()):
			for j := 1; j < len(v.Content); j += 2 {
				if err := walkExample(v.Content[j], ft.Elem(), record); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// objectType reports whether the schema of t is an object with keys.
func objectType(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && mapType(t) == nil && t != headersType
}

// jsonable turns a decoded YAML value into one encoding/json can write.
func jsonable(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = jsonable(x)
		}
		return v
	case map[any]any:
		m := map[string]any{}
		for k, x := range v {
			m[fmt.Sprint(k)] = jsonable(x)
		}
		return m
	case []any:
		for i, x := range v {
			v[i] = jsonable(x)
		}
		return v
	case time.Time:
		return v.Format(time.RFC3339)
	}
	return v
}

// extraExamples are examples of the keys that no example configuration
// sets, by the Go type declaring them and key.
var extraExamples = map[string]map[string]any{
	"HTTPClientConfig": {
		"bearer_token":      "0123456789abcdef0123",
		"bearer_token_file": "secrets/prometheus-token",
	},
	"ProxyConfig": {
		"proxy_from_environment": true,
		"proxy_connect_header":   map[string]any{"Proxy-Authorization": []any{"Basic Z3VhcmRpYW46c2VjcmV0"}},
	},
	"Authorization": {
		"type":             "Bearer",
		"credentials":      "0123456789abcdef0123",
		"credentials_file": "secrets/prometheus-token",
	},
	"BasicAuth": {
		"username_file": "secrets/prometheus-user",
		"password":      "hunter2hunter2",
	},
	"OAuth2": {
		"client_secret":               "s3cr3t-client-secret",
		"client_certificate_key_id":   "key-1",
		"client_certificate_key":      "-----BEGIN PRIVATE KEY----- ...",
		"client_certificate_key_file": "secrets/oauth2-key.pem",
		"grant_type":                  "urn:ietf:params:oauth:grant-type:jwt-bearer",
		"signature_algorithm":         "RS256",
		"iss":                         "guardian",
		"audience":                    "https://auth.example.com/",
		"claims":                      map[string]any{"tenant": "shop"},
	},
	"TLSConfig": {
		"ca":          "-----BEGIN CERTIFICATE----- ...",
		"cert":        "-----BEGIN CERTIFICATE----- ...",
		"key":         "-----BEGIN PRIVATE KEY----- ...",
		"ca_file":     "/etc/guardian/tls/ca.pem",
		"cert_file":   "/etc/guardian/tls/client.pem",
		"key_file":    "/etc/guardian/tls/client-key.pem",
		"max_version": "TLS13",
	},
	"Header": {
		"secrets": []any{"Bearer 0123456789abcdef0123"},
		"files":   []any{"secrets/tenant"},
	},
	"Cluster":          {"kubeconfig": "/etc/guardian/kubeconfig", "shards": 64},
	"KubernetesDeploy": {"kubeconfig": "/etc/guardian/kubeconfig"},
	"BlueGreen":        {"previous": "blue", "value_template": "{{.Baseline}}"},
	"HelmExecutor":     {"to_revision": 3},
	"KubernetesExecutor": {
		"statefulset":        "checkout-db",
		"daemonset":          "node-agent",
		"to_revision":        3,
		"version_annotation": "example.com/version",
	},
}
