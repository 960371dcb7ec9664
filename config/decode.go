package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// The decoder walks the yaml.Node tree and the Go value side by side instead
// of calling yaml.v3's Decode on the whole document, because:
//   - it knows the field path of every value, so each error names its path
//     and line without parsing yaml's messages;
//   - it collects every error instead of stopping at the first custom
//     unmarshaler error;
//   - it stays strict (unknown fields are errors) inside prometheus/common's
//     types, which Node.Decode would decode leniently;
//   - it honours ",inline" structs and maps (HTTPClientConfig, Headers) and
//     applies defaults to each element before its fields are decoded.
//
// Leaves (scalars and types with their own unmarshalers, such as Secret or
// URL) are decoded with Node.Decode, which honours both yaml.v3's
// Unmarshaler and the yaml.v2-style UnmarshalYAML(func(any) error).

// defaulter is implemented by schema types whose fields have defaults. The
// decoder calls setDefaults on every new element before decoding into it.
type defaulter interface{ setDefaults() }

// obsoleteUnmarshaler is the yaml.v2 unmarshaler interface, still honoured
// by yaml.v3 and used by prometheus/common.
type obsoleteUnmarshaler interface {
	UnmarshalYAML(unmarshal func(any) error) error
}

var (
	unmarshalerType         = reflect.TypeFor[yaml.Unmarshaler]()
	obsoleteUnmarshalerType = reflect.TypeFor[obsoleteUnmarshaler]()
)

// decoder collects errors and the line of every field path.
type decoder struct {
	lines   map[string]int
	errs    Errors
	dropped int      // errors beyond maxKeptErrors, not kept
	failed  []string // paths with decode errors
}

func newDecoder() *decoder {
	return &decoder{lines: map[string]int{}}
}

func (d *decoder) fail(path string, line int, format string, args ...any) {
	d.failed = append(d.failed, path)
	if len(d.errs) >= maxKeptErrors {
		d.dropped++
		return
	}
	msg := clipMessage(fmt.Sprintf(format, clipArgs(args)...))
	d.errs = append(d.errs, &FieldError{Path: clip(path), Line: line, Msg: msg})
}

// document decodes a whole document into cfg. It reports false if the
// document is unusable: a syntax error, empty, not a mapping, followed by
// another document, or beyond the limits (limits.go).
func (d *decoder) document(data []byte, cfg *Config) bool {
	if len(data) > MaxFileSize {
		d.errs = append(d.errs, tooLarge(int64(len(data)))...)
		return false
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		line, msg := yamlSyntaxError(err, data)
		d.fail("", line, "invalid YAML: %s", msg)
		return false
	}
	// A second document would be ignored: refuse it, and report its
	// syntax errors. Empty documents (a trailing "---") are harmless.
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line, msg := yamlSyntaxError(err, data)
			d.fail("", line, "invalid YAML: %s", msg)
			return false
		}
		if len(next.Content) > 0 && !isNull(next.Content[0]) {
			d.fail("", next.Line, "a second YAML document starts here: a configuration file holds one document")
			return false
		}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		d.fail("", 0, "empty configuration")
		return false
	}
	if !d.checkLimits(doc.Content[0]) {
		return false
	}
	root := resolve(doc.Content[0])
	if isNull(root) {
		d.fail("", root.Line, "empty configuration")
		return false
	}
	if root.Kind != yaml.MappingNode {
		d.fail("", root.Line, "configuration must be a mapping, got %s", describe(root))
		return false
	}
	d.value(root, reflect.ValueOf(cfg).Elem(), "")
	return true
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are yaml's parser (not scanner) errors. yaml.v3 reports
// their line 0-based (it adds 1 only for scanner errors), so it is one less
// than the line to look at.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// yamlSyntaxError splits yaml's "yaml: line N: msg" into N and msg. yaml
// leaves the line out for the first line, and for encoding errors (which
// it locates by offset, not reported): their line is that of the first
// byte that is not valid UTF-8 or is a control character.
func yamlSyntaxError(err error, data []byte) (int, string) {
	s := err.Error()
	if m := yamlLineRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		if parserProblems[m[2]] {
			n++
		}
		return n, m[2]
	}
	return badByteLine(data), strings.TrimPrefix(s, "yaml: ")
}

// badByteLine returns the line of the first byte of data that YAML does not
// allow (invalid UTF-8, a control character), or 1.
func badByteLine(data []byte) int {
	line := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == '\n':
			line++
		case r == utf8.RuneError && size == 1,
			r < 0x20 && r != '\t' && r != '\r',
			r >= 0x7f && r <= 0x9f && r != 0x85,
			r == 0xfffe || r == 0xffff:
			return line
		}
		i += size
	}
	return 1
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names a node's kind and value for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("string %q", v)
		case "!!int":
			return "integer " + v
		case "!!float":
			return "number " + v
		case "!!bool":
			return "boolean " + v
		case "!!null":
			return "null"
		default:
			return fmt.Sprintf("%s %q", n.ShortTag(), v)
		}
	}
	return "an unexpected node"
}

// want names what a Go kind expects, for error messages.
func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return "a " + t.String()
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// value decodes n into v, which is addressable.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	n = resolve(n)
	if isNull(n) {
		// Null means "not set": pointers, lists and maps stay empty and
		// everything else keeps its default.
		switch v.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
			v.SetZero()
		}
		return
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			nv := reflect.New(v.Type().Elem())
			setDefaults(nv)
			v.Set(nv)
		}
		d.value(n, v.Elem(), path)
		return
	}

	pt := reflect.PointerTo(v.Type())
	if pt.Implements(unmarshalerType) {
		// Our own scalar types: their messages are written for users.
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.fail(path, n.Line, "%s", cleanYAMLError(err))
		}
		return
	}

	switch v.Kind() {
	case reflect.Struct:
		if n.Kind == yaml.MappingNode {
			d.mapping(n, v, path, nil)
			return
		}
		if pt.Implements(obsoleteUnmarshalerType) {
			d.leaf(n, v, path)
			return
		}
		d.fail(path, n.Line, "want a mapping, got %s", describe(n))
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n.Line, "want a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.lines[p] = resolve(item).Line
			setDefaults(s.Index(i).Addr())
			d.value(item, s.Index(i), p)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(path, n.Line, "want a mapping, got %s", describe(n))
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := resolve(n.Content[i]), n.Content[i+1]
			p := join(path, k.Value)
			if first, dup := seen[k.Value]; dup {
				d.fail(p, k.Line, "duplicate key, first defined at line %d", first)
				continue
			}
			seen[k.Value] = k.Line
			d.mapEntry(k, val, v, p)
		}
	default:
		d.leaf(n, v, path)
	}
}

// mapEntry decodes one key and value into the map m.
func (d *decoder) mapEntry(k, val *yaml.Node, m reflect.Value, path string) {
	d.lines[path] = k.Line
	key := reflect.New(m.Type().Key())
	if err := k.Decode(key.Interface()); err != nil {
		d.fail(path, k.Line, "invalid key: %s", cleanYAMLError(err))
		return
	}
	elem := reflect.New(m.Type().Elem())
	setDefaults(elem)
	before := len(d.errs)
	d.value(val, elem.Elem(), path)
	if len(d.errs) == before {
		m.SetMapIndex(key.Elem(), elem.Elem())
	}
}

// leaf decodes a scalar or a type with its own unmarshaler.
func (d *decoder) leaf(n *yaml.Node, v reflect.Value, path string) {
	custom := reflect.PointerTo(v.Type()).Implements(obsoleteUnmarshalerType)
	if !custom && v.Kind() != reflect.Interface && n.Kind != yaml.ScalarNode {
		d.fail(path, n.Line, "want %s, got %s", want(v.Type()), describe(n))
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		if custom || v.Kind() == reflect.Interface {
			d.fail(path, n.Line, "%s", cleanYAMLError(err))
		} else {
			d.fail(path, n.Line, "want %s, got %s", want(v.Type()), describe(n))
		}
		return
	}
	// No threshold or ratio is meaningful as NaN (every comparison is
	// false) or infinite (never or always breached).
	if k := v.Kind(); (k == reflect.Float32 || k == reflect.Float64) &&
		(math.IsNaN(v.Float()) || math.IsInf(v.Float(), 0)) {
		d.fail(path, n.Line, "want a finite number, got %s", n.Value)
	}
}

// mapping decodes the mapping n into the struct v. Keys in skip were set
// explicitly by the mapping that merged this one in ("<<: *anchor").
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string, skip map[string]bool) {
	fields := fieldsOf(v.Type())

	explicit := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := resolve(n.Content[i]); k.ShortTag() != "!!merge" {
			explicit[k.Value] = true
		}
	}
	// Merged mappings first; keys written here, or merged earlier, win.
	override := map[string]bool{}
	for k := range skip {
		override[k] = true
	}
	for k := range explicit {
		override[k] = true
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k.ShortTag() != "!!merge" {
			continue
		}
		val := resolve(n.Content[i+1])
		var merged []*yaml.Node
		switch val.Kind {
		case yaml.MappingNode:
			merged = []*yaml.Node{val}
		case yaml.SequenceNode:
			for _, m := range val.Content {
				merged = append(merged, resolve(m))
			}
		}
		for _, m := range merged {
			if m.Kind != yaml.MappingNode {
				d.fail(join(path, "<<"), k.Line, "merge needs a mapping, got %s", describe(m))
				continue
			}
			d.mapping(m, v, path, override)
			for j := 0; j+1 < len(m.Content); j += 2 {
				override[resolve(m.Content[j]).Value] = true
			}
		}
		if len(merged) == 0 {
			d.fail(join(path, "<<"), k.Line, "merge needs a mapping, got %s", describe(val))
		}
	}

	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k.ShortTag() == "!!merge" || skip[k.Value] {
			continue
		}
		name := k.Value
		p := join(path, name)
		if first, dup := seen[name]; dup {
			d.fail(p, k.Line, "duplicate key, first defined at line %d", first)
			continue
		}
		seen[name] = k.Line
		f, ok := fields.byName[name]
		if !ok {
			if fields.inlineMap != nil {
				m := fieldByIndex(v, fields.inlineMap)
				if m.IsNil() {
					m.Set(reflect.MakeMap(m.Type()))
				}
				d.mapEntry(k, val, m, p)
				continue
			}
			d.fail(p, k.Line, "unknown field")
			continue
		}
		d.lines[p] = k.Line
		d.value(val, fieldByIndex(v, f), p)
	}
}

// structFields maps YAML keys to field indexes, with inline structs
// flattened.
type structFields struct {
	byName    map[string][]int
	inlineMap []int // index of a ",inline" map catching other keys
}

var fieldCache sync.Map // reflect.Type -> *structFields

func fieldsOf(t reflect.Type) *structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*structFields)
	}
	sf := &structFields{byName: map[string][]int{}}
	collectFields(t, sf)
	fieldCache.Store(t, sf)
	return sf
}

func collectFields(t reflect.Type, sf *structFields) {
	WalkYAMLFields(t, func(_ reflect.StructField, key string, index []int, _ reflect.Type) {
		if key == "" {
			sf.inlineMap = index
			return
		}
		if _, dup := sf.byName[key]; !dup {
			sf.byName[key] = index
		}
	})
}

// WalkYAMLFields calls fn for each YAML key of struct type t as the
// decoder reads it, in declaration order: exported fields under their yaml
// tag's name (the lower-cased field name without one), ",inline" structs
// flattened into their parent's keys. index leads from t to the field and
// owner is the struct type declaring it. An ",inline" map, which catches
// the keys no field has, is reported with key "".
func WalkYAMLFields(t reflect.Type, fn func(f reflect.StructField, key string, index []int, owner reflect.Type)) {
	walkYAMLFields(t, nil, fn)
}

func walkYAMLFields(t reflect.Type, prefix []int, fn func(reflect.StructField, string, []int, reflect.Type)) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		index := append(append([]int(nil), prefix...), i)
		if slices.Contains(strings.Split(opts, ","), "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Struct:
				walkYAMLFields(ft, index, fn)
			case reflect.Map:
				fn(f, "", index, t)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fn(f, name, index, t)
	}
}

// fieldByIndex is reflect.Value.FieldByIndex allocating nil inline pointers.
func fieldByIndex(v reflect.Value, index []int) reflect.Value {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v
}

// setDefaults calls setDefaults on p (a pointer) if its type has defaults.
func setDefaults(p reflect.Value) {
	if d, ok := p.Interface().(defaulter); ok {
		d.setDefaults()
	}
}

var yamlErrLineRE = regexp.MustCompile(`^line \d+: `)

// cleanYAMLError strips yaml's "yaml: unmarshal errors:" and "line N: "
// decorations, since the caller adds the path and line itself.
func cleanYAMLError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = yamlErrLineRE.ReplaceAllString(m, "")
		}
		return strings.Join(msgs, "; ")
	}
	return yamlErrLineRE.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), "")
}
