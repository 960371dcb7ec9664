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

// examples finds an example value for each key: the first value written
// for it in the example configurations (examples/*.yaml, in name order),
// else one of extraExamples. Values of keys whose type has keys of its own
// (a trigger, a TLS configuration) are not examples: their keys are.
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
		default:
			var x any
			if err := v.Decode(&x); err != nil {
				return fmt.Errorf("line %d: %w", v.Line, err)
			}
			record(f.owner.Name(), f.key, jsonable(x))
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
// sets, by schema type and key.
var extraExamples = map[string]map[string]any{}
