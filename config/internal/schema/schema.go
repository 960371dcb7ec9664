// Package schema generates the JSON Schema of Guardian's configuration
// file, the Helm chart's copy of it and the configuration reference, from
// the types of package config, their doc comments, the defaults the code
// applies and the example configurations under examples/.
package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/invopop/jsonschema"
	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/config"
)

// The generated files, relative to the repository's root.
const (
	SchemaFile      = "config/schema.json"
	ChartSchemaFile = "deploy/helm/guardian/values.schema.json"
	ReferenceFile   = "docs/configuration.md"
)

// Generate returns the generated files by their paths relative to root,
// the repository's root: the schema, the chart's values.schema.json (read
// from root, with its config property replaced) and the reference.
func Generate(root string) (map[string][]byte, error) {
	g, err := newGenerator(root)
	if err != nil {
		return nil, err
	}
	strict, err := g.schema(true)
	if err != nil {
		return nil, err
	}
	schemaJSON, err := encode(strict, "", "  ")
	if err != nil {
		return nil, err
	}
	ref, err := g.reference(strict)
	if err != nil {
		return nil, err
	}
	chart, err := g.chart(root)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		SchemaFile:      append(schemaJSON, '\n'),
		ChartSchemaFile: chart,
		ReferenceFile:   append(ref, '\n'),
	}, nil
}

// generator holds what both variants of the schema and the reference are
// made from.
type generator struct {
	docs     docs
	consts   map[string]string
	defaults map[string]map[string]any // def -> key -> default
	examples map[string]map[string]any // def -> key -> example
	types    map[string]reflect.Type   // def -> Go type
}

func newGenerator(root string) (*generator, error) {
	g := &generator{docs: docs{}, consts: constants(), types: map[string]reflect.Type{}}
	dirs, err := packageDirs(root, configPkg, commonPkg)
	if err != nil {
		return nil, err
	}
	for _, pkg := range []string{configPkg, commonPkg} {
		if err := g.docs.read(pkg, dirs[pkg]); err != nil {
			return nil, fmt.Errorf("reading the doc comments of %s: %w", pkg, err)
		}
	}
	if g.defaults, err = defaults(); err != nil {
		return nil, err
	}
	if g.examples, err = examples(root); err != nil {
		return nil, err
	}
	return g, nil
}

const (
	configPkg = "github.com/rollback-guardian/guardian/config"
	commonPkg = "github.com/prometheus/common/config"
)

// packageDirs finds the source directories of packages with `go list`.
func packageDirs(root string, pkgs ...string) (map[string]string, error) {
	cmd := exec.Command("go", append([]string{"list", "-f", "{{.ImportPath}} {{.Dir}}"}, pkgs...)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w: %s", strings.Join(pkgs, " "), err, stderr.String())
	}
	dirs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, dir, _ := strings.Cut(line, " ")
		dirs[pkg] = dir
	}
	for _, p := range pkgs {
		if dirs[p] == "" {
			return nil, fmt.Errorf("go list did not find %s", p)
		}
	}
	return dirs, nil
}

// constants maps the Go names of constants that doc comments mention to
// what users write.
func constants() map[string]string {
	return map[string]string{
		"DefaultCommandTimeout":      model.Duration(config.DefaultCommandTimeout).String(),
		"DefaultWebhookTimeout":      model.Duration(config.DefaultWebhookTimeout).String(),
		"DefaultWebhookMaxAttempts":  fmt.Sprint(config.DefaultWebhookMaxAttempts),
		"DefaultKubernetesTimeout":   model.Duration(config.DefaultKubernetesTimeout).String(),
		"DefaultArgoRolloutsTimeout": model.Duration(config.DefaultArgoRolloutsTimeout).String(),
		"DefaultHelmTimeout":         model.Duration(config.DefaultHelmTimeout).String(),
		"DefaultHelmMaxHistory":      fmt.Sprint(config.DefaultHelmMaxHistory),
		"DefaultSelectorLabel":       config.DefaultSelectorLabel,
		"ProgressDeadlineTrigger":    config.ProgressDeadlineTrigger,
	}
}

// Types the reflector maps to schemas of their own rather than reflecting
// their Go structure.
var (
	durationType      = reflect.TypeFor[config.Duration]()
	modelDurationType = reflect.TypeFor[model.Duration]()
	baselineType      = reflect.TypeFor[config.BaselineLimit]()
	timeType          = reflect.TypeFor[config.Time]()
	policyType        = reflect.TypeFor[config.NoDataPolicy]()
	secretType        = reflect.TypeFor[commoncfg.Secret]()
	urlType           = reflect.TypeFor[commoncfg.URL]()
	tlsVersionType    = reflect.TypeFor[commoncfg.TLSVersion]()
	headersType       = reflect.TypeFor[commoncfg.Headers]()
	headerType        = reflect.TypeFor[commoncfg.Header]()
	configType        = reflect.TypeFor[config.Config]()
)

// schema reflects the configuration's types. strict is the schema of a
// whole configuration file; otherwise it is the chart's, for the partial
// configuration under config: that the chart completes (no required keys,
// none of the rules that combine keys, and null allowed at the top).
func (g *generator) schema(strict bool) (*jsonschema.Schema, error) {
	names := map[string]reflect.Type{}
	var clash error
	r := &jsonschema.Reflector{
		Anonymous:                  true,
		ExpandedStruct:             true, // the root is the Config object
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true, // required keys come from rules.go
		Mapper:                     mapType,
		Namer: func(t reflect.Type) string {
			if t.Name() == "" || mapType(t) != nil {
				return t.Name()
			}
			if prev, ok := names[t.Name()]; ok && prev != t && clash == nil {
				clash = fmt.Errorf("two types are named %s: %s and %s", t.Name(), prev, t)
			}
			names[t.Name()] = t
			return t.Name()
		},
		LookupComment: func(t reflect.Type, field string) string {
			key := docKey(t, field)
			text, ok := commonDocs[key]
			if !ok {
				text, ok = configDocs[key]
			}
			if !ok {
				text = g.docs[key]
			}
			if text == "" {
				return ""
			}
			return markdown(text, renamer(t, g.consts))
		},
	}
	s := r.ReflectFromType(configType)
	// Headers inline a map, which the reflector cannot see: reflect its
	// values on their own.
	h := r.ReflectFromType(headerType)
	if clash != nil {
		return nil, clash
	}
	for name, def := range h.Definitions {
		s.Definitions[name] = def
	}
	h.Version, h.Definitions = "", nil
	s.Definitions["Header"] = h
	s.Definitions["Headers"].Properties = nil
	s.Definitions["Headers"].AdditionalProperties = &jsonschema.Schema{Ref: "#/$defs/Header"}
	for name, def := range valueDefs() {
		s.Definitions[name] = def
	}
	for name, t := range names {
		g.types[name] = t
	}
	s.Title = "Guardian configuration"
	s.Description = "The configuration file of Guardian (config.yaml), generated from the Go types of package config: run `go generate ./config` after changing them. `guardian check` validates a file completely; this schema checks keys, types, enums, required keys and defaults, for editors and CI."
	if err := g.annotate(s, strict); err != nil {
		return nil, err
	}
	return s, nil
}

// mapType gives the types with their own YAML syntax their schema; nil
// lets the reflector reflect the type. Each call returns a new schema, which
// the reflector may change.
func mapType(t reflect.Type) *jsonschema.Schema {
	switch t {
	case durationType, modelDurationType:
		return &jsonschema.Schema{Ref: "#/$defs/Duration"}
	case baselineType:
		return &jsonschema.Schema{Ref: "#/$defs/BaselineLimit"}
	case timeType:
		return &jsonschema.Schema{Ref: "#/$defs/Time"}
	case secretType:
		return &jsonschema.Schema{Ref: "#/$defs/Secret"}
	case policyType:
		return &jsonschema.Schema{Type: "string", Enum: []any{string(config.PolicyIgnore), string(config.PolicyFire)}}
	case urlType:
		return &jsonschema.Schema{Type: "string", Format: "uri"}
	case tlsVersionType:
		return &jsonschema.Schema{Type: "string", Enum: []any{"TLS10", "TLS11", "TLS12", "TLS13"}}
	}
	return nil
}

// durationPattern is the syntax of model.ParseDuration: units from the
// largest to the smallest, each at most once, or "0".
const durationPattern = `^(0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)$`

// valueDefs are the schemas of the scalar types with a syntax of their own.
func valueDefs() map[string]*jsonschema.Schema {
	one := uint64(1)
	return map[string]*jsonschema.Schema{
		"Duration": {
			Description: "A Prometheus duration: a number and a unit (ms, s, m, h, d, w, y), units from the largest to the smallest, such as 30s, 1m30s, 2h or 1d; 0 for none.",
			AnyOf: []*jsonschema.Schema{
				{Type: "string", Pattern: durationPattern, MinLength: &one},
				{Type: "integer", Const: 0},
			},
		},
		"BaselineLimit": {
			Description: `A limit relative to the baseline version's value: a ratio ("2x": twice the baseline's value) or a delta ("+0.02": the baseline's value plus 0.02). Quote a delta, or YAML reads it as a number.`,
			AnyOf: []*jsonschema.Schema{
				{Type: "string", Pattern: `^(.+x|\+.+)$`},
				{Type: "number", Minimum: "0"},
			},
		},
		"Time": {
			Description: "A point in time, RFC 3339, such as 2026-12-05T22:00:00Z.",
			Type:        "string",
			Format:      "date-time",
		},
		"Secret": {
			Description: "A secret written in the file itself; prefer the *_file field beside it, which keeps the secret out of the configuration.",
			Type:        "string",
		},
	}
}

// encode marshals a schema with the given indentation, keeping <, > and &
// as they are.
func encode(v any, prefix, indent string) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if bytes.Contains(b, []byte(`\\u00`)) {
		return nil, fmt.Errorf("a description holds a literal \\u00: cannot keep <, > and & readable")
	}
	for _, r := range [][2]string{{`\u003c`, "<"}, {`\u003e`, ">"}, {`\u0026`, "&"}} {
		b = bytes.ReplaceAll(b, []byte(r[0]), []byte(r[1]))
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, prefix, indent); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// relPath is path relative to the repository's root, with slashes.
func relPath(root, path string) string {
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return path
	}
	return filepath.ToSlash(rel)
}
