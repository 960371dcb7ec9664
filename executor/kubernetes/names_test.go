package kubernetes_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/rollback-guardian/guardian/executor/kubernetes"
)

// nameCorpus returns names to check: the boundaries of every length limit
// and a few thousand short strings over the characters the rules tell
// apart.
func nameCorpus() []string {
	names := []string{"", "a", "-", ".", "/", "a/b/c", "/a", "a/", "shop.eu", "Example.com/v",
		"app.kubernetes.io/version", "light blue", "shöp", "a..b", "a-.b", "1web"}
	for _, n := range []int{52, 53, 54, 62, 63, 64, 252, 253, 254} {
		names = append(names, strings.Repeat("a", n), strings.Repeat("a", n-1)+"-", "a."+strings.Repeat("b", n-2),
			strings.Repeat("x", n)+"/v", "x/"+strings.Repeat("N", n))
	}
	const alphabet = "aZ09-._/ é"
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		var b strings.Builder
		for range r.IntN(8) {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		names = append(names, b.String())
	}
	return names
}

// problems returns the messages of err's problems with field, in order.
func problems(err error, field string) []string {
	if err == nil {
		return nil
	}
	var msgs []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		if m, ok := strings.CutPrefix(e.Error(), field+": "); ok {
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// TestNamesAsTheAPIServer checks that Config.Validate, whose name checks
// live in package config without client-go, gives the verdicts and
// messages of k8s.io/apimachinery's validation package.
func TestNamesAsTheAPIServer(t *testing.T) {
	for _, tc := range []struct {
		field string
		cfg   func(name string) kubernetes.Config
		want  func(name string) []string
	}{
		{"namespace", func(s string) kubernetes.Config {
			return kubernetes.Config{Connection: kubernetes.Connection{Namespace: s}, Deployment: "checkout"}
		}, validation.IsDNS1123Label},
		{"deployment", func(s string) kubernetes.Config { return kubernetes.Config{Deployment: s} }, validation.IsDNS1123Subdomain},
		{"version_label", func(s string) kubernetes.Config {
			return kubernetes.Config{Deployment: "checkout", VersionLabel: s}
		}, validation.IsQualifiedName},
		{"blue_green.service", func(s string) kubernetes.Config {
			return kubernetes.Config{BlueGreen: &kubernetes.BlueGreen{Service: s}}
		}, validation.IsDNS1035Label},
		{"blue_green.selector_label", func(s string) kubernetes.Config {
			return kubernetes.Config{BlueGreen: &kubernetes.BlueGreen{Service: "web", SelectorLabel: s}}
		}, validation.IsQualifiedName},
		{"blue_green.previous", func(s string) kubernetes.Config {
			return kubernetes.Config{BlueGreen: &kubernetes.BlueGreen{Service: "web", Previous: s}}
		}, validation.IsValidLabelValue},
	} {
		t.Run(tc.field, func(t *testing.T) {
			for _, name := range nameCorpus() {
				if name == "" {
					continue // "missing" or a default, not a name check
				}
				cfg := tc.cfg(name)
				got, want := problems(cfg.Validate(), tc.field), tc.want(name)
				if !slices.Equal(got, want) {
					t.Errorf("%s %q:\n got %q\nwant %q", tc.field, name, got, want)
				}
			}
		})
	}
}
