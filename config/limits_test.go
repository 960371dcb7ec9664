package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// aliasBomb returns a small document whose aliases expand to width^levels
// trigger names under a valid service: the decoder follows every alias.
func aliasBomb(levels, width int) string {
	var b strings.Builder
	b.WriteString("x0: &x0 [a")
	b.WriteString(strings.Repeat(", a", width-1))
	b.WriteString("]\n")
	for i := 1; i < levels; i++ {
		fmt.Fprintf(&b, "x%d: &x%d [*x%d", i, i, i-1)
		b.WriteString(strings.Repeat(fmt.Sprintf(", *x%d", i-1), width-1))
		b.WriteString("]\n")
	}
	return b.String()
}

// bombConfig puts an alias bomb where the decoder walks into it: the
// services list, whose elements must be mappings.
func bombConfig(levels, width int) string {
	return strings.Replace(aliasBomb(levels, width), fmt.Sprintf("x%d:", levels-1), "services:", 1)
}

// loadErrors parses data and returns its errors, failing if it loads.
func loadErrors(t *testing.T, data []byte) Errors {
	t.Helper()
	cfg, err := Parse(data)
	if err == nil {
		t.Fatalf("loaded without error: %d services", len(cfg.Services))
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %T is not Errors: %v", err, err)
	}
	return es
}

func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		want string // one error, this message
	}{
		{
			name: "alias bomb",
			data: bombConfig(9, 10), // 10^9 nodes in 300 bytes
			want: fmt.Sprintf("aliases expand the document beyond %d nodes", MaxAliasNodes),
		},
		{
			name: "small alias bomb",
			data: bombConfig(5, 10), // 10^5 nodes: within the yaml library's own ratio
			want: fmt.Sprintf("aliases expand the document beyond %d nodes", MaxAliasNodes),
		},
		{
			name: "deep nesting",
			data: "global:\n  auth: " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "\n",
			want: fmt.Sprintf("nested deeper than %d levels", MaxDepth),
		},
		{
			name: "self-referencing merge",
			data: "services:\n  - &s\n    name: a\n    x: [*s]\n",
			want: fmt.Sprintf("nested deeper than %d levels", MaxDepth),
		},
		{
			name: "too many nodes",
			data: "services: [" + strings.Repeat("1,", MaxNodes) + "1]\n",
			want: fmt.Sprintf("more than %d nodes", MaxNodes),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			es := loadErrors(t, []byte(tc.data))
			if d := time.Since(start); d > 20*time.Second { // generous: the race detector on a busy machine
				t.Errorf("took %s", d)
			}
			if len(es) != 1 || !strings.Contains(es[0].Msg, tc.want) {
				t.Fatalf("errors (%d):\n%.2000s\nwant one containing %q", len(es), es.Error(), tc.want)
			}
			if es[0].Line == 0 {
				t.Errorf("no line: %v", es[0])
			}
		})
	}
}

func TestFileSizeLimit(t *testing.T) {
	big := serviceConfig("big") + "# " + strings.Repeat("x", MaxFileSize) + "\n"
	want := fmt.Sprintf("the file has %d bytes, more than the limit of 1 MiB", len(big))

	es := loadErrors(t, []byte(big))
	if len(es) != 1 || es[0].Msg != want {
		t.Errorf("Parse: %v, want %q", es, want)
	}

	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, big)
	_, raw, err := LoadFile(path)
	if !errors.As(err, &es) || len(es) != 1 || es[0].Msg != want {
		t.Errorf("LoadFile: %v, want %q", err, want)
	}
	if len(raw) > MaxFileSize+1 {
		t.Errorf("LoadFile read %d bytes of an oversized file", len(raw))
	}

	// Exactly at the limit is fine.
	ok := serviceConfig("ok")
	ok += "#" + strings.Repeat("x", MaxFileSize-len(ok)-2) + "\n"
	if len(ok) != MaxFileSize {
		t.Fatalf("test file has %d bytes", len(ok))
	}
	if _, err := Parse([]byte(ok)); err != nil {
		t.Errorf("a file of exactly MaxFileSize: %v", err)
	}
}

// TestLongValuesClipped checks that a huge value is not echoed whole in
// an error, which also goes to the log and to the reload API's answer.
func TestLongValuesClipped(t *testing.T) {
	huge := strings.Repeat("y", MaxFileSize/2)
	for _, tc := range []struct {
		name, data string
		quoted     bool // the message quotes the value
	}{
		{"query", strings.Replace(serviceConfig("c"), `up{version="{{.Version}}"}`, "up{"+huge, 1), false},
		{"listen address", "global: {listen_address: " + huge + "}\n" + serviceConfig("c"), true},
		{"name", serviceConfig(huge), true},
		{"unknown field", serviceConfig("c") + "    " + huge + ": 1\n", false},
		{"undefined notifier", serviceConfig("c") + "    notify: [" + huge + "]\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es := loadErrors(t, []byte(tc.data))
			if n := len(es.Error()); n > 2*maxMessage {
				t.Errorf("%d bytes of errors: %.300s...", n, es.Error())
			}
			if s := es.Error(); tc.quoted && !strings.Contains(s, "bytes)") {
				t.Errorf("the clipped value does not say its size: %.500s", s)
			}
		})
	}
}

func TestErrorCountLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString(serviceConfig("c"))
	for i := range 5 * MaxErrors {
		fmt.Fprintf(&b, "    unknown%d: 1\n", i)
	}
	es := loadErrors(t, []byte(b.String()))
	if len(es) != MaxErrors+1 {
		t.Fatalf("%d errors, want %d and a summary", len(es), MaxErrors+1)
	}
	if got, want := es[MaxErrors].Msg, fmt.Sprintf("%d more errors not shown", 4*MaxErrors); got != want {
		t.Errorf("last error %q, want %q", got, want)
	}
}

func TestDocumentMarkers(t *testing.T) {
	// A document separator before the only document is fine.
	if _, err := Parse([]byte("---\n" + serviceConfig("c"))); err != nil {
		t.Errorf("leading ---: %v", err)
	}
	if _, err := Parse([]byte(serviceConfig("c") + "...\n")); err != nil {
		t.Errorf("trailing ...: %v", err)
	}
}
