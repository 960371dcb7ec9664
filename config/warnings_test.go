package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWarnings loads testdata/*.warn.yml, which are valid, and compares
// their warnings with the "# warn: " lines at their top; testdata/*.good.yml
// must load without any.
func TestWarnings(t *testing.T) {
	warn, err := filepath.Glob("testdata/*.warn.yml")
	if err != nil {
		t.Fatal(err)
	}
	good, err := filepath.Glob("testdata/*.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warn) == 0 || len(good) == 0 {
		t.Fatalf("%d warn and %d good configs", len(warn), len(good))
	}
	for _, file := range append(warn, good...) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, line := range strings.Split(string(data), "\n") {
				if w, ok := strings.CutPrefix(line, "# warn: "); ok {
					want = append(want, w)
				}
			}
			cfg, _, err := LoadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]string, len(cfg.Warnings))
			for i, w := range cfg.Warnings {
				got[i] = w.String()
				if w.Path == "" || w.Line == 0 {
					t.Errorf("warning without a path or line: %+v", w)
				}
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("warnings:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		})
	}
}
