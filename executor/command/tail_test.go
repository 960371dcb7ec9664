package command

import (
	"strings"
	"testing"
)

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name          string
		writes        []string
		max           int
		wantKept      string
		wantTruncated int64
	}{
		{name: "fits", writes: []string{"ab", "cd"}, max: 8, wantKept: "abcd"},
		{name: "exactly full", writes: []string{"abcd", "efgh"}, max: 8, wantKept: "abcdefgh"},
		{name: "small writes overflow", writes: strings.Split("abcdefghijklmnopqrstuvwxyz", ""), max: 8, wantKept: "stuvwxyz", wantTruncated: 18},
		{name: "one huge write", writes: []string{"0123456789abcdef"}, max: 4, wantKept: "cdef", wantTruncated: 12},
		{name: "huge then small", writes: []string{"0123456789", "xy"}, max: 4, wantKept: "89xy", wantTruncated: 8},
		{name: "cut inside a character", writes: []string{"aé", "bcd"}, max: 4, wantKept: "bcd", wantTruncated: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newTailBuffer(tt.max)
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := string(b.kept()); got != tt.wantKept {
				t.Errorf("kept() = %q, want %q", got, tt.wantKept)
			}
			if got := b.truncated(); got != tt.wantTruncated {
				t.Errorf("truncated() = %d, want %d", got, tt.wantTruncated)
			}
			if s := b.String(); (tt.wantTruncated > 0) != strings.HasPrefix(s, "[guardian: ") || !strings.HasSuffix(s, tt.wantKept) {
				t.Errorf("String() = %q", s)
			}
		})
	}
}

func TestTail(t *testing.T) {
	b := newTailBuffer(1024)
	b.Write([]byte("line one\nline two\nline three\n"))
	if got, want := b.tail(14), "line three"; got != want {
		t.Errorf("tail(14) = %q, want %q", got, want)
	}
	if got, want := b.tail(100), "line one\nline two\nline three"; got != want {
		t.Errorf("tail(100) = %q, want %q", got, want)
	}
}
