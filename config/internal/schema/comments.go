package schema

import (
	"fmt"
	"go/ast"
	"go/doc/comment"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	"github.com/rollback-guardian/guardian/config"
)

// docs holds the doc comments of struct types and their fields, by
// "importpath.Type" and "importpath.Type.Field".
type docs map[string]string

// readDocs parses the non-test Go files of the package in dir, whose import
// path is pkg, and records the doc comments of its struct types and their
// fields. A field without a comment of its own shares the comment of an
// earlier field of its group when that comment names it, as in
// "Above, Below and AboveBaseline are the conditions".
func (d docs) read(pkg, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				doc := ts.Doc
				if doc == nil && len(gd.Specs) == 1 {
					doc = gd.Doc
				}
				key := pkg + "." + ts.Name.Name
				if doc != nil {
					d[key] = doc.Text()
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				var shared string // the last field comment, for the fields it names
				for _, field := range st.Fields.List {
					text := ""
					switch {
					case field.Doc != nil:
						text = field.Doc.Text()
					case field.Comment != nil:
						text = field.Comment.Text()
					}
					if text != "" {
						shared = text
					}
					for _, n := range field.Names {
						switch {
						case text != "":
							d[key+"."+n.Name] = text
						case shared != "" && regexp.MustCompile(`\b`+n.Name+`\b`).MatchString(shared):
							d[key+"."+n.Name] = shared
						}
					}
				}
			}
		}
	}
	return nil
}

// markdown renders a doc comment as Markdown-compatible plain text:
// paragraphs joined by a blank line, code blocks indented by four spaces,
// list items starting with "- ". rename rewrites the Go names in the text.
func markdown(text string, rename func(string) string) string {
	var p comment.Parser
	doc := p.Parse(text)
	var blocks []string
	var render func(bs []comment.Block, bullet string)
	render = func(bs []comment.Block, bullet string) {
		for _, b := range bs {
			switch b := b.(type) {
			case *comment.Paragraph:
				blocks = append(blocks, bullet+rename(plain(b.Text)))
			case *comment.Heading:
				blocks = append(blocks, rename(plain(b.Text)))
			case *comment.Code:
				lines := strings.Split(strings.TrimRight(b.Text, "\n"), "\n")
				for i, l := range lines {
					lines[i] = "    " + l
				}
				blocks = append(blocks, strings.Join(lines, "\n"))
			case *comment.List:
				for _, it := range b.Items {
					render(it.Content, "- ")
				}
			}
		}
	}
	render(doc.Content, "")
	return strings.Join(blocks, "\n\n")
}

// plain is the text of a paragraph on one line.
func plain(ts []comment.Text) string {
	var b strings.Builder
	var walk func(ts []comment.Text)
	walk = func(ts []comment.Text) {
		for _, t := range ts {
			switch t := t.(type) {
			case comment.Plain:
				b.WriteString(string(t))
			case comment.Italic:
				b.WriteString(string(t))
			case *comment.Link:
				walk(t.Text)
			case *comment.DocLink:
				walk(t.Text)
			}
		}
	}
	walk(ts)
	return strings.Join(strings.Fields(b.String()), " ")
}

// camel matches a Go identifier with a lower-case letter followed by an
// upper-case one (VersionLabel, ExternalURL), which is unlikely to be an
// ordinary word of a sentence.
var camel = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*[a-z0-9][A-Z][A-Za-z0-9]*$`)

var word = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)

// leadingNames matches the Go names that start a comment: "Timeout",
// "Deployment or Rollout", "Above, Below and AboveBaseline".
var leadingNames = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*(?:(?:, |,? (?:and|or) )[A-Z][A-Za-z0-9]*)*`)

// renamer returns the function that rewrites Go names in the comment of
// struct type t or of one of its fields: the names of t's fields that start
// the comment, the CamelCase names of its fields anywhere, and the
// constants in consts, as the YAML keys and values users write.
func renamer(t reflect.Type, consts map[string]string) func(string) string {
	keys := map[string]string{}
	if t != nil && t.Kind() == reflect.Struct {
		for _, f := range yamlFields(t) {
			keys[f.goName] = f.key
		}
	}
	rename := func(w string, any bool) string {
		if v, ok := consts[w]; ok {
			return v
		}
		// A CamelCase name spelt like its key (StatefulSet, statefulset)
		// is as likely a word of its own, such as a Kubernetes kind.
		if key, ok := keys[w]; ok && (any || camel.MatchString(w) && key != strings.ToLower(w)) {
			return "`" + key + "`"
		}
		return w
	}
	return func(s string) string {
		lead := leadingNames.FindString(s)
		head := word.ReplaceAllStringFunc(lead, func(w string) string { return rename(w, true) })
		tail := word.ReplaceAllStringFunc(s[len(lead):], func(w string) string { return rename(w, false) })
		return head + tail
	}
}

// yamlField is a field as the configuration's decoder sees it: inline
// structs flattened.
type yamlField struct {
	goName, key string
	index       []int
	typ         reflect.Type
	owner       reflect.Type // the struct type declaring it
}

// yamlFields lists the YAML keys of struct type t, as config's decoder
// reads them.
func yamlFields(t reflect.Type) []yamlField {
	var out []yamlField
	config.WalkYAMLFields(t, func(f reflect.StructField, key string, index []int, owner reflect.Type) {
		if key != "" { // not an inline map
			out = append(out, yamlField{goName: f.Name, key: key, index: index, typ: f.Type, owner: owner})
		}
	})
	return out
}

// docKey is the key of a type, or of its field, in docs.
func docKey(t reflect.Type, field string) string {
	k := fmt.Sprintf("%s.%s", t.PkgPath(), t.Name())
	if field != "" {
		k += "." + field
	}
	return k
}
