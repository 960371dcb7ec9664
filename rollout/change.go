package rollout

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// ErrInvalidChange is wrapped by the errors for what an announcement says
// a deploy changed (commit, author, change URL) when it is not usable.
var ErrInvalidChange = errors.New("invalid change")

// Bounds of an announcement's change fields.
const (
	MaxCommit    = 64
	MaxAuthor    = 256
	MaxChangeURL = 2048
	// maxImages bounds the images remembered of a version.
	maxImages = 16
)

// Change is what Guardian knows of what a version deployed: where the
// first place to look is when it turns out bad. The announcement through
// the API gives Commit, Author and ChangeURL; a Kubernetes workload gives
// Images (its pod template's containers) and Chart (its helm.sh/chart
// label).
type Change struct {
	Version string   `json:"version"`
	Images  []string `json:"images,omitempty"`
	Chart   string   `json:"chart,omitempty"`
	// Commit is the source revision, e.g. a Git commit hash.
	Commit string `json:"commit,omitempty"`
	Author string `json:"author,omitempty"`
	// ChangeURL links to the change: a pull request, a merge request, a
	// release page. Always http or https.
	ChangeURL string `json:"change_url,omitempty"`
}

// Empty reports whether c says nothing beyond its version.
func (c Change) Empty() bool {
	return len(c.Images) == 0 && c.Chart == "" && c.Commit == "" && c.Author == "" && c.ChangeURL == ""
}

// Validate checks the fields an announcement gives: Commit a short
// printable word, Author printable, ChangeURL an absolute http or https
// URL, each bounded.
func (c Change) Validate() error {
	if err := printable("commit", c.Commit, MaxCommit); err != nil {
		return err
	}
	if strings.ContainsAny(c.Commit, " \t") {
		return fmt.Errorf("%w: commit %q has spaces: give the revision alone", ErrInvalidChange, c.Commit)
	}
	if err := printable("author", c.Author, MaxAuthor); err != nil {
		return err
	}
	if c.ChangeURL == "" {
		return nil
	}
	if err := printable("change_url", c.ChangeURL, MaxChangeURL); err != nil {
		return err
	}
	u, err := url.Parse(c.ChangeURL)
	switch {
	case err != nil:
		return fmt.Errorf("%w: change_url: %w", ErrInvalidChange, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("%w: change_url %q is not an absolute http or https URL", ErrInvalidChange, c.ChangeURL)
	case u.User != nil:
		return fmt.Errorf("%w: change_url must not carry credentials", ErrInvalidChange)
	}
	return nil
}

func printable(field, v string, limit int) error {
	switch {
	case len(v) > limit:
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalidChange, field, limit)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidChange, field)
	case strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return fmt.Errorf("%w: %s has control characters", ErrInvalidChange, field)
	}
	return nil
}

// merge returns c with the fields n sets.
func (c Change) merge(n Change) Change {
	c.Version = n.Version
	if len(n.Images) > 0 {
		c.Images = slices.Clone(n.Images[:min(len(n.Images), maxImages)])
	}
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&c.Chart, n.Chart}, {&c.Commit, n.Commit}, {&c.Author, n.Author}, {&c.ChangeURL, n.ChangeURL},
	} {
		if f.src != "" {
			*f.dst = f.src
		}
	}
	return c
}

func (c Change) clone() Change {
	c.Images = slices.Clone(c.Images)
	return c
}
