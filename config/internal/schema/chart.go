package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/invopop/jsonschema"
)

// chartConfigPointer is where the chart's values.schema.json holds the
// configuration's schema; its $refs point under it.
const chartConfigPointer = "#/properties/config"

// chart returns the chart's values.schema.json, read from root, with the
// schema of its config value replaced by the generated one: the schema of
// a partial configuration (see generator.schema), its definitions inside
// it. The rest of the file is kept byte for byte, the draft it declares
// set to the generated schema's.
func (g *generator) chart(root string) ([]byte, error) {
	path := filepath.Join(root, filepath.FromSlash(ChartSchemaFile))
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := g.schema(false)
	if err != nil {
		return nil, err
	}
	s.Version = ""
	s.Title = ""
	walk(s, func(s *jsonschema.Schema) { s.Examples = nil }) // for editors, not Helm
	s.Description = "Guardian's configuration (config.yaml), which the chart completes (global.listen_address, global.state_dir, global.auth.tokens_file, global.cluster) and passes on. This is the schema of config/schema.json without its required keys and the rules that combine keys: the keys, types and values are checked here, the whole file by `guardian check` and the daemon."
	b, err := encode(s, "    ", "  ")
	if err != nil {
		return nil, err
	}
	b = bytes.ReplaceAll(b, []byte(`"$ref": "#/$defs/`), []byte(`"$ref": "`+chartConfigPointer+`/$defs/`))

	start, end, err := valueSpan(data, "properties", "config")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ChartSchemaFile, err)
	}
	out := append(append(append([]byte(nil), data[:start]...), b...), data[end:]...)

	vstart, vend, err := valueSpan(out, "$schema")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ChartSchemaFile, err)
	}
	version, _ := json.Marshal(jsonschema.Version)
	return append(append(append([]byte(nil), out[:vstart]...), version...), out[vend:]...), nil
}

// valueSpan finds the value at keys (an object key at each level from the
// top) in the JSON document data, and returns its start and end offsets.
func valueSpan(data []byte, keys ...string) (int, int, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	for depth := 0; depth < len(keys); depth++ {
		if t, err := dec.Token(); err != nil || t != json.Delim('{') {
			return 0, 0, fmt.Errorf("%s is not an object", strings.Join(keys[:depth], "."))
		}
		for {
			t, err := dec.Token()
			if err != nil {
				return 0, 0, err
			}
			if t == json.Delim('}') {
				return 0, 0, fmt.Errorf("no %s", strings.Join(keys[:depth+1], "."))
			}
			if t == keys[depth] {
				break
			}
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return 0, 0, err
			}
		}
	}
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, 0, fmt.Errorf("no value for %s", strings.Join(keys, "."))
		}
		return 0, 0, err
	}
	end := int(dec.InputOffset())
	return end - len(v), end, nil
}

// walk calls f on s and every schema inside it.
func walk(s *jsonschema.Schema, f func(*jsonschema.Schema)) {
	if s == nil {
		return
	}
	f(s)
	for _, d := range s.Definitions {
		walk(d, f)
	}
	if s.Properties != nil {
		for _, p := range s.Properties.FromOldest() {
			walk(p, f)
		}
	}
	for _, list := range [][]*jsonschema.Schema{s.AllOf, s.AnyOf, s.OneOf} {
		for _, x := range list {
			walk(x, f)
		}
	}
	for _, x := range []*jsonschema.Schema{s.Not, s.If, s.Then, s.Else, s.Items, s.AdditionalProperties, s.PropertyNames} {
		walk(x, f)
	}
}
