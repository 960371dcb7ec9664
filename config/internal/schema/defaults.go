package schema

import (
	"fmt"
	"reflect"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/config"
)

// defaults finds the defaults the code applies, by schema type and key:
// it builds a configuration as the decoder does, every new value with
// config.ApplyDefaults, every executor with its own SetDefaults, and
// records the fields that are not zero. validationDefaults adds those that
// validation applies to an unset field.
func defaults() (map[string]map[string]any, error) {
	out := map[string]map[string]any{}
	var errs []error
	record := func(def, key string, v any) {
		if out[def] == nil {
			out[def] = map[string]any{}
		}
		if prev, ok := out[def][key]; ok && !reflect.DeepEqual(prev, v) {
			errs = append(errs, fmt.Errorf("%s.%s defaults to %v in one place and %v in another", def, key, prev, v))
		}
		out[def][key] = v
	}
	root := reflect.New(configType)
	config.ApplyDefaults(root.Interface())
	walkDefaults(root.Elem(), record)
	for def, keys := range validationDefaults {
		for k, v := range keys {
			record(def, k, v)
		}
	}
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return out, nil
}

// validationDefaults are the defaults validation gives a field left unset
// (config/validate.go), by schema type and key.
var validationDefaults = map[string]map[string]any{
	"KubernetesDeploy": {"on_progress_deadline": config.OnProgressDeadlineIncident},
	"Approval":         {"on_timeout": "rollback"},
}

// setDefaultser is implemented by the executors' configurations.
type setDefaultser interface{ SetDefaults() }

// newValue returns a new value of type t (a struct) with the defaults the
// decoder gives it, its nil struct pointers filled likewise, then the
// defaults of its own SetDefaults, which may depend on them (a blue-green
// target's selector_label).
func newValue(t reflect.Type) reflect.Value {
	p := reflect.New(t)
	config.ApplyDefaults(p.Interface())
	if _, ok := p.Interface().(setDefaultser); ok {
		for _, f := range yamlFields(t) {
			fv := p.Elem().FieldByIndex(f.index)
			if fv.Kind() == reflect.Pointer && fv.IsNil() && fv.Type().Elem().Kind() == reflect.Struct && mapType(fv.Type().Elem()) == nil {
				fv.Set(newValue(fv.Type().Elem()).Addr())
			}
		}
		p.Interface().(setDefaultser).SetDefaults()
	}
	return p.Elem()
}

// walkDefaults records the non-zero fields of the struct v, and walks into
// its structs, pointers, lists and maps of structs.
func walkDefaults(v reflect.Value, record func(def, key string, v any)) {
	def := v.Type().Name()
	for _, f := range yamlFields(v.Type()) {
		fv := v.FieldByIndex(f.index)
		t := f.typ
		if t.Kind() == reflect.Pointer {
			if fv.IsNil() {
				if t.Elem().Kind() != reflect.Struct || mapType(t.Elem()) != nil {
					continue
				}
				fv.Set(newValue(t.Elem()).Addr())
			}
			fv, t = fv.Elem(), t.Elem()
		}
		switch {
		case mapType(t) != nil || t.Kind() != reflect.Struct && t.Kind() != reflect.Slice && t.Kind() != reflect.Map:
			if !fv.IsZero() {
				record(def, f.key, yamlValue(fv))
			}
		case t.Kind() == reflect.Struct:
			walkDefaults(fv, record)
		case (t.Kind() == reflect.Slice || t.Kind() == reflect.Map) && t.Elem().Kind() == reflect.Struct && mapType(t.Elem()) == nil:
			walkDefaults(newValue(t.Elem()), record)
		}
	}
}

// yamlValue is a leaf value as it is written in YAML.
func yamlValue(v reflect.Value) any {
	switch x := v.Interface().(type) {
	case config.Duration:
		return x.String()
	case model.Duration:
		return x.String()
	case config.BaselineLimit:
		return x.Text
	case config.NoDataPolicy:
		return string(x)
	case commoncfg.Secret:
		return string(x)
	}
	return v.Interface()
}
