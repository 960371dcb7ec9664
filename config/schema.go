package config

// The configuration's JSON Schema (schema.json), its copy in the Helm
// chart's values.schema.json and the reference docs/configuration.md are
// generated from the types of this package and their doc comments by
// internal/schema; TestSchemaFresh and TestReferenceFresh fail when they
// are stale.
//go:generate go run ./internal/schema/generate

// ApplyDefaults sets the defaults that the decoder gives every new value
// of *p's type before decoding into it (a service's watch_window, a
// trigger's window...); p points to a value of a configuration type, and a
// type without such defaults is left as it is. Defaults that depend on
// other fields are applied later, by validation, and the executors' by
// their SetDefaults.
func ApplyDefaults(p any) {
	if d, ok := p.(defaulter); ok {
		d.setDefaults()
	}
}
