package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// loadSlim loads testdata/good/slim.yml, which uses every feature a slim
// build leaves out, and returns its errors as printed, one per problem.
// TestSlimBuild (build_*_test.go, one per build flavour) checks them.
func loadSlim(t *testing.T) (*Config, []string) {
	t.Helper()
	cfg, _, err := LoadFile("testdata/good/slim.yml")
	if err == nil {
		return cfg, nil
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %T is not Errors: %v", err, err)
	}
	got := make([]string, len(es))
	for i, e := range es {
		got[i] = e.Error()
	}
	return nil, got
}

// checkSlim checks what this build says of slim.yml, its tags and what it
// left out.
func checkSlim(t *testing.T, tags string, leftOut, wantErrs []string) {
	t.Helper()
	cfg, got := loadSlim(t)
	if !slices.Equal(got, wantErrs) {
		t.Errorf("errors:\n  %q\nwant:\n  %q", got, wantErrs)
	}
	if len(wantErrs) == 0 && cfg == nil {
		t.Error("no configuration")
	}
	// A reload to it is rejected alike, and the running config stays.
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, serviceConfig("v1"))
	f := newFixture(t, path, false)
	slim, err := os.ReadFile("testdata/good/slim.yml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(slim))
	err = await(t, f.r.Request())
	var es Errors
	if (err != nil) != (len(wantErrs) > 0) || (err != nil && (!errors.As(err, &es) || es.Error() != strings.Join(wantErrs, "\n"))) {
		t.Errorf("reload: %v, want %q", err, wantErrs)
	}
	if len(wantErrs) > 0 && f.r.Current().Services[0].Name != "v1" {
		t.Errorf("a rejected reload replaced the running config")
	}

	if SlimTags() != tags {
		t.Errorf("SlimTags() = %q, want %q", SlimTags(), tags)
	}
	if !slices.Equal(LeftOut(), leftOut) {
		t.Errorf("LeftOut() = %q, want %q", LeftOut(), leftOut)
	}
}
