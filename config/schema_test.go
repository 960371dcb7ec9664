package config_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rollback-guardian/guardian/config/internal/schema"
)

// generated runs the generator once for the tests of this file.
var generated = sync.OnceValues(func() (map[string][]byte, error) {
	return schema.Generate("..")
})

// checkFresh fails unless the file at path, relative to the repository's
// root, is what the generator writes now.
func checkFresh(t *testing.T, path string) {
	t.Helper()
	files, err := generated()
	if err != nil {
		t.Fatal(err)
	}
	want, ok := files[path]
	if !ok {
		t.Fatalf("the generator does not write %s", path)
	}
	got, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(path)))
	if err != nil {
		t.Fatalf("%v: run go generate ./config", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run go generate ./config\n%s", path, firstDifference(got, want))
	}
}

// firstDifference shows the first line where got and want differ.
func firstDifference(got, want []byte) string {
	g, w := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl []byte
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if !bytes.Equal(gl, wl) {
			return fmt.Sprintf("line %d:\n  committed: %s\n  generated: %s", i+1, gl, wl)
		}
	}
	return ""
}

// TestSchemaFresh: config/schema.json, and its copy in the Helm chart's
// values.schema.json, are what `go generate ./config` writes from the
// configuration's types now.
func TestSchemaFresh(t *testing.T) {
	checkFresh(t, schema.SchemaFile)
	checkFresh(t, schema.ChartSchemaFile)
}

// TestReferenceFresh: docs/configuration.md is what `go generate ./config`
// writes from the configuration's types and doc comments now.
func TestReferenceFresh(t *testing.T) {
	checkFresh(t, schema.ReferenceFile)
}
