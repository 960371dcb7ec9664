package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// FieldError is one problem in a configuration file, located by its field
// path (such as "services[0].triggers[1].for") and its line.
type FieldError struct {
	// Path is the field path; empty for problems with the whole document.
	Path string
	// Line is the 1-based line in the file; 0 when unknown.
	Line int
	// Msg says what is wrong.
	Msg string
}

// Error formats the error as `path: msg (line N)`.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// Errors is every problem found in a configuration file, ordered by line.
// Parse and LoadFile return it so that `guardian check` can list them all.
type Errors []*FieldError

// Error lists every error, one per line.
func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// sortErrors orders errors by line, errors without a line last, keeping the
// order in which they were found otherwise.
func sortErrors(es Errors) {
	slices.SortStableFunc(es, func(a, b *FieldError) int {
		la, lb := a.Line, b.Line
		if la == 0 {
			la = int(^uint(0) >> 1)
		}
		if lb == 0 {
			lb = int(^uint(0) >> 1)
		}
		return cmp.Compare(la, lb)
	})
}
