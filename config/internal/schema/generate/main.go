// Command generate writes the configuration's JSON Schema, the Helm
// chart's copy of it and the configuration reference (see package schema).
// `go generate ./config` runs it in the config directory.
package main

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/rollback-guardian/guardian/config/internal/schema"
)

func main() {
	root := flag.String("root", "..", "the repository's root")
	flag.Parse()
	files, err := schema.Generate(*root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "generating the configuration schema:", err)
		os.Exit(1)
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		p := filepath.Join(*root, filepath.FromSlash(name))
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
