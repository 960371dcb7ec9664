package backtest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/model"

	"github.com/rollback-guardian/guardian/config"
)

// Setting changes one field of one trigger: TRIGGER.FIELD=VALUE, where
// FIELD is above, below (numbers, or "none" to drop the condition) or for
// (a duration such as 2m).
type Setting struct {
	Trigger, Field, Value string
}

// String is the setting as written.
func (s Setting) String() string { return s.Trigger + "." + s.Field + "=" + s.Value }

// ParseSetting parses TRIGGER.FIELD=VALUE.
func ParseSetting(s string) (Setting, error) {
	lhs, value, ok := strings.Cut(s, "=")
	i := strings.LastIndexByte(lhs, '.')
	if !ok || i <= 0 || i == len(lhs)-1 || value == "" {
		return Setting{}, fmt.Errorf("setting %q: want TRIGGER.FIELD=VALUE, e.g. error-rate.above=0.03", s)
	}
	set := Setting{Trigger: lhs[:i], Field: lhs[i+1:], Value: value}
	switch set.Field {
	case "above", "below":
		if value != "none" {
			if _, err := strconv.ParseFloat(value, 64); err != nil {
				return Setting{}, fmt.Errorf("setting %q: %s must be a number or none", s, set.Field)
			}
		}
	case "for":
		if _, err := model.ParseDuration(value); err != nil {
			return Setting{}, fmt.Errorf("setting %q: for must be a duration such as 2m: %v", s, err)
		}
	default:
		return Setting{}, fmt.Errorf("setting %q: unknown field %q (above, below or for)", s, set.Field)
	}
	return set, nil
}

// Apply returns a copy of triggers with the settings applied; a setting
// of a trigger not in triggers is an error.
func Apply(triggers []config.Trigger, settings []Setting) ([]config.Trigger, error) {
	out := slices.Clone(triggers)
	for _, s := range settings {
		i := slices.IndexFunc(out, func(t config.Trigger) bool { return t.Name == s.Trigger })
		if i < 0 {
			names := make([]string, 0, len(out))
			for _, t := range out {
				names = append(names, t.Name)
			}
			return nil, fmt.Errorf("setting %s: no trigger %q (the service has %s)", s, s.Trigger, strings.Join(names, ", "))
		}
		t := &out[i]
		switch s.Field {
		case "above", "below":
			var p *float64
			if s.Value != "none" {
				f, _ := strconv.ParseFloat(s.Value, 64)
				p = &f
			}
			if s.Field == "above" {
				t.Above = p
			} else {
				t.Below = p
			}
		case "for":
			d, _ := model.ParseDuration(s.Value)
			t.For = config.Duration(d)
		}
	}
	return out, nil
}
