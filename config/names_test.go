package config

import (
	"slices"
	"strings"
	"testing"
)

// The messages of k8s.io/apimachinery's validation package, which the
// checks in names.go reproduce (the executor packages compare the two on
// many names, against the SDKs they link anyway). Like the originals, a
// list of examples reads "'a',  or 'b', regex ...", with two spaces.
const (
	dns1123LabelMsg     = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
	dns1123SubdomainMsg = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
	dns1035LabelMsg     = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
	labelNameMsg        = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
	labelValueMsg       = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)

// labels returns n DNS labels of length each joined by dots.
func labels(n, length int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = strings.Repeat("a", length)
	}
	return strings.Join(parts, ".")
}

func TestNameChecks(t *testing.T) {
	sub253 := labels(3, 63) + "." + strings.Repeat("b", 61) // 63*3 + 3 + 61 = 253
	for _, tc := range []struct {
		name  string
		check func(string) []string
		in    string
		want  []string // nil: valid
	}{
		// IsDNS1123Label: namespaces.
		{"label", dns1123Label, "shop", nil},
		{"label digits first", dns1123Label, "123-abc", nil},
		{"label one character", dns1123Label, "a", nil},
		{"label 63", dns1123Label, strings.Repeat("a", 63), nil},
		{"label 64", dns1123Label, strings.Repeat("a", 64), []string{"must be no more than 63 characters"}},
		{"label 64 with dots", dns1123Label, strings.Repeat("a", 30) + "." + strings.Repeat("b", 33), []string{"must be no more than 63 characters", "must not contain dots"}},
		{"label dots", dns1123Label, "shop.eu", []string{"must not contain dots"}},
		{"label empty", dns1123Label, "", []string{dns1123LabelMsg}},
		{"label upper case", dns1123Label, "Shop", []string{dns1123LabelMsg}},
		{"label underscore", dns1123Label, "shop_1", []string{dns1123LabelMsg}},
		{"label leading dash", dns1123Label, "-shop", []string{dns1123LabelMsg}},
		{"label trailing dash", dns1123Label, "shop-", []string{dns1123LabelMsg}},
		{"label trailing dot", dns1123Label, "shop.", []string{dns1123LabelMsg}},
		{"label non-ASCII", dns1123Label, "shöp", []string{dns1123LabelMsg}},

		// IsDNS1123Subdomain: Deployments, StatefulSets, DaemonSets, Rollouts.
		{"subdomain", dns1123Subdomain, "checkout", nil},
		{"subdomain dots", dns1123Subdomain, "checkout.v2.eu", nil},
		{"subdomain 253", dns1123Subdomain, sub253, nil},
		{"subdomain 254", dns1123Subdomain, sub253 + "b", []string{"must be no more than 253 characters"}},
		{"subdomain 254 bad", dns1123Subdomain, sub253 + "_", []string{"must be no more than 253 characters", dns1123SubdomainMsg}},
		{"subdomain label over 63", dns1123Subdomain, strings.Repeat("a", 100), nil}, // the originals do not limit its labels
		{"subdomain empty", dns1123Subdomain, "", []string{dns1123SubdomainMsg}},
		{"subdomain upper case", dns1123Subdomain, "Check_out", []string{dns1123SubdomainMsg}},
		{"subdomain double dot", dns1123Subdomain, "a..b", []string{dns1123SubdomainMsg}},
		{"subdomain leading dot", dns1123Subdomain, ".a", []string{dns1123SubdomainMsg}},
		{"subdomain dash before dot", dns1123Subdomain, "a-.b", []string{dns1123SubdomainMsg}},

		// IsDNS1035Label: Services.
		{"1035", dns1035Label, "web", nil},
		{"1035 63", dns1035Label, "w" + strings.Repeat("1", 62), nil},
		{"1035 64", dns1035Label, "w" + strings.Repeat("1", 63), []string{"must be no more than 63 characters"}},
		{"1035 digit first", dns1035Label, "1web", []string{dns1035LabelMsg}},
		{"1035 dots", dns1035Label, "web.shop", []string{dns1035LabelMsg}},
		{"1035 upper case", dns1035Label, "Web", []string{dns1035LabelMsg}},
		{"1035 empty", dns1035Label, "", []string{dns1035LabelMsg}},
		{"1035 64 bad", dns1035Label, strings.Repeat("1", 64), []string{"must be no more than 63 characters", dns1035LabelMsg}},

		// IsQualifiedName: label and annotation keys.
		{"key", qualifiedName, "version", nil},
		{"key mixed", qualifiedName, "My_Name.v-1", nil},
		{"key prefixed", qualifiedName, "app.kubernetes.io/version", nil},
		{"key name 63", qualifiedName, "example.com/" + strings.Repeat("N", 63), nil},
		{"key name 64", qualifiedName, "example.com/" + strings.Repeat("N", 64), []string{"name part must be no more than 63 bytes"}},
		{"key prefix 253", qualifiedName, sub253 + "/v", nil},
		{"key prefix 254", qualifiedName, sub253 + "b/v", []string{"prefix part must be no more than 253 bytes"}},
		{"key upper-case prefix", qualifiedName, "Example.com/v", []string{"prefix part " + dns1123SubdomainMsg}},
		{"key empty prefix", qualifiedName, "/version", []string{"prefix part must be non-empty"}},
		{"key empty name", qualifiedName, "example.com/", []string{"name part must be non-empty", labelNameMsg}},
		{"key empty", qualifiedName, "", []string{"name part must be non-empty", labelNameMsg}},
		{"key spaces", qualifiedName, "not a label", []string{labelNameMsg}},
		{"key trailing dash", qualifiedName, "version-", []string{labelNameMsg}},
		{"key two slashes", qualifiedName, "a/b/c", []string{"a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"}},

		// IsValidLabelValue: blue-green colours.
		{"value", labelValue, "blue", nil},
		{"value empty", labelValue, "", nil},
		{"value mixed", labelValue, "V1.4_0-rc", nil},
		{"value 63", labelValue, strings.Repeat("v", 63), nil},
		{"value 64", labelValue, strings.Repeat("v", 64), []string{"must be no more than 63 bytes"}},
		{"value 64 bad", labelValue, strings.Repeat("v", 63) + "-", []string{"must be no more than 63 bytes", labelValueMsg}},
		{"value slash", labelValue, "blue/green", []string{labelValueMsg}},
		{"value leading dot", labelValue, ".blue", []string{labelValueMsg}},
		{"value space", labelValue, "light blue", []string{labelValueMsg}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.check(tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("check(%q):\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestHelmReleaseName pins chartutil.ValidateReleaseName's verdicts: a DNS
// subdomain of at most 53 bytes.
func TestHelmReleaseName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"checkout", true},
		{"checkout-v2", true},
		{"checkout.eu", true},
		{"1", true},
		{strings.Repeat("a", 53), true},
		{labels(2, 26), true}, // 53 with a dot
		{strings.Repeat("a", 54), false},
		{"", false},
		{"Checkout", false},
		{"check_out", false},
		{"-checkout", false},
		{"checkout-", false},
		{"checkout.", false},
		{"a..b", false},
		{"check out", false},
	} {
		if got := helmReleaseName(tc.in); got != tc.want {
			t.Errorf("helmReleaseName(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
