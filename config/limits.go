package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Limits on a configuration file. They bound the memory and time a load
// takes, whatever the file holds, so that a hostile or broken file fails
// `guardian check` and a reload quickly with a clear error instead of
// exhausting the daemon. A real configuration stays far below each.
const (
	// MaxFileSize is the largest configuration file, in bytes: 1 MiB,
	// what a Kubernetes ConfigMap can hold, and room for some 500
	// services written as the commented example config.yaml (10 KiB for
	// one). Parsing a file of this size, however dense, stays within
	// about 120 MB and a second.
	MaxFileSize = 1 << 20
	// MaxNodes is the most YAML nodes (keys, values and list items) a
	// document may have once its aliases are expanded: about 3 000
	// services with two triggers each.
	MaxNodes = 200_000
	// MaxAliasNodes is the most nodes that aliases (*name, and merges
	// <<: *name) may add to a document when they are expanded. Sharing a
	// trigger between a thousand services adds about 50 000.
	MaxAliasNodes = 100_000
	// MaxDepth is the deepest nesting of mappings and lists, aliases
	// expanded. Guardian's schema nests about ten levels deep.
	MaxDepth = 64
	// MaxErrors is the most errors reported for a file; a summary of the
	// rest follows them.
	MaxErrors = 100
	// maxKeptErrors is the most errors kept while checking a file; the
	// rest are only counted.
	maxKeptErrors = 10 * MaxErrors
	// MaxShards is the most shards global.cluster.shards may split the
	// services into: each is a Lease a replica renews every retry period.
	MaxShards = 4096
)

const (
	// maxValue is how much of a value an error message quotes.
	maxValue = 200
	// maxMessage is the longest error message; longer ones quote input.
	maxMessage = 1000
)

// readLimited reads the file at path, up to one byte beyond MaxFileSize.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fileError(path, err)
	}
	return data, nil
}

// FileError is a configuration file that could not be read. It wraps the
// cause, so errors.Is(err, fs.ErrNotExist) tells a missing file.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string {
	if errors.Is(e.Err, fs.ErrNotExist) {
		return fmt.Sprintf("config file %s does not exist", e.Path)
	}
	return fmt.Sprintf("cannot read config file %s: %v", e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// fileError is err reading path as a *FileError, without the path that an
// *fs.PathError repeats.
func fileError(path string, err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		err = pe.Err
	}
	return &FileError{Path: path, Err: err}
}

// tooLarge is the error for a file over MaxFileSize, whose size is n, or
// at least n when read from a file.
func tooLarge(n int64) Errors {
	return Errors{{Msg: fmt.Sprintf("the file has %d bytes, more than the limit of %d MiB", n, MaxFileSize>>20)}}
}

// checkLimits walks the document as the decoder will, aliases expanded,
// and fails at the first node beyond MaxDepth, MaxNodes or MaxAliasNodes.
// The walk stops there, so it costs at most MaxNodes steps however far the
// aliases would expand.
func (d *decoder) checkLimits(root *yaml.Node) bool {
	var nodes, aliased int
	var walk func(n *yaml.Node, depth int, alias *yaml.Node) bool
	walk = func(n *yaml.Node, depth int, alias *yaml.Node) bool {
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			if alias == nil {
				alias = n
			}
			n = n.Alias
		}
		nodes++
		if alias != nil {
			aliased++
		}
		switch {
		case depth > MaxDepth:
			d.fail("", n.Line, "nested deeper than %d levels", MaxDepth)
			return false
		case aliased > MaxAliasNodes:
			d.fail("", alias.Line, "aliases expand the document beyond %d nodes (here *%s)", MaxAliasNodes, clip(alias.Value))
			return false
		case nodes > MaxNodes:
			d.fail("", n.Line, "the document has more than %d nodes", MaxNodes)
			return false
		}
		for _, c := range n.Content {
			if !walk(c, depth+1, alias) {
				return false
			}
		}
		return true
	}
	return walk(root, 0, nil)
}

// clip shortens a long value for an error message: its first maxValue
// bytes (whole characters) and its size.
func clip(s string) string {
	if len(s) <= maxValue {
		return s
	}
	i := maxValue
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return fmt.Sprintf("%s… (%d bytes)", s[:i], len(s))
}

// clipArgs clips the string arguments of an error message.
func clipArgs(args []any) []any {
	for i, a := range args {
		if s, ok := a.(string); ok && len(s) > maxValue {
			args[i] = clip(s)
		}
	}
	return args
}

// clipMessage shortens a message that quotes its input at length, such as
// a PromQL parser's.
func clipMessage(msg string) string {
	if len(msg) <= maxMessage {
		return msg
	}
	i := maxMessage
	for i > 0 && !utf8.RuneStart(msg[i]) {
		i--
	}
	return fmt.Sprintf("%s… (%d bytes)", msg[:i], len(msg))
}

// capErrors keeps the first MaxErrors errors and says how many were left
// out (dropped more were never kept), and where the first of them is.
func capErrors(es Errors, dropped int) Errors {
	if len(es) <= MaxErrors && dropped == 0 {
		return es
	}
	more := &FieldError{Msg: fmt.Sprintf("%d more errors not shown", len(es)+dropped-min(len(es), MaxErrors))}
	if len(es) > MaxErrors {
		more.Line = es[MaxErrors].Line
	}
	return append(es[:min(len(es), MaxErrors):min(len(es), MaxErrors)], more)
}
