package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParse checks that any bytes load or fail with located errors, within
// the limits: no panic, a bounded time, a bounded report.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yml")
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, "../config.yaml", "testdata/good/full.yml", "testdata/good/slim.yml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(bombConfig(9, 10)))
	f.Add([]byte("global:\n  auth: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n"))
	f.Add([]byte(serviceConfig("a") + "---\n" + serviceConfig("b")))
	f.Add([]byte("services:\n  - &s\n    name: a\n    x: [*s]\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		cfg, err := Parse(data)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %s for %d bytes", d, len(data))
		}
		if err == nil {
			if cfg == nil {
				t.Fatal("no config and no error")
			}
			_ = cfg.String()
			for _, w := range cfg.Warnings {
				if w.Path == "" || w.Line == 0 {
					t.Errorf("warning without a path or line: %+v", w)
				}
			}
			return
		}
		var es Errors
		if !errors.As(err, &es) || len(es) == 0 {
			t.Fatalf("error %T is not Errors: %v", err, err)
		}
		if len(es) > MaxErrors+1 {
			t.Errorf("%d errors", len(es))
		}
		for _, e := range es {
			if len(e.Msg) > maxMessage+30 || len(e.Path) > maxValue+30 {
				t.Errorf("%d bytes of message, %d of path: %.300s", len(e.Msg), len(e.Path), e.Error())
			}
			if e.Path == "" && e.Line == 0 && !wholeFile(e.Msg) {
				t.Errorf("error without a path or line: %q", e.Msg)
			}
		}
	})
}

// wholeFile reports whether msg is about the whole file, which has no line.
func wholeFile(msg string) bool {
	return msg == "empty configuration" ||
		strings.HasPrefix(msg, "the file has ") ||
		strings.HasSuffix(msg, " more errors not shown")
}
