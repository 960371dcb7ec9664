package config

import (
	"fmt"
	"regexp"
	"strings"
)

// Kubernetes and Helm name checks, with the verdicts and messages of
// k8s.io/apimachinery's validation package (IsDNS1123Label,
// IsDNS1123Subdomain, IsDNS1035Label, IsQualifiedName, IsValidLabelValue)
// and of Helm's chartutil.ValidateReleaseName, so that checking a
// configuration links neither. Like the originals they return one message
// per problem, none for a valid name. Note that the originals say
// "characters" in the length messages of DNS names and "bytes" in those of
// label keys and values: both count bytes.

const (
	dns1123LabelFmt     = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
	dns1123SubdomainFmt = dns1123LabelFmt + "(\\." + dns1123LabelFmt + ")*"
	dns1035LabelFmt     = "[a-z]([-a-z0-9]*[a-z0-9])?"
	labelKeyFmt         = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
	labelValueFmt       = "(" + labelKeyFmt + ")?"

	dns1123LabelErrMsg     = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
	dns1123SubdomainErrMsg = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
	dns1035LabelErrMsg     = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"
	labelKeyErrMsg         = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
	labelValueErrMsg       = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"

	// Length limits, in bytes.
	maxDNSLabel        = 63
	maxDNSSubdomain    = 253
	maxLabelName       = 63 // the name part of a label key
	maxLabelValue      = 63
	maxHelmReleaseName = 53 // Helm's own limit, below the DNS label's
)

var (
	dns1123LabelRE     = regexp.MustCompile("^" + dns1123LabelFmt + "$")
	dns1123SubdomainRE = regexp.MustCompile("^" + dns1123SubdomainFmt + "$")
	dns1035LabelRE     = regexp.MustCompile("^" + dns1035LabelFmt + "$")
	labelKeyRE         = regexp.MustCompile("^" + labelKeyFmt + "$")
	labelValueRE       = regexp.MustCompile("^" + labelValueFmt + "$")
)

// dns1123Label checks a DNS label (RFC 1123), such as a namespace name.
func dns1123Label(s string) []string {
	var msgs []string
	if len(s) > maxDNSLabel {
		msgs = append(msgs, maxLenCharacters(maxDNSLabel))
	}
	if !dns1123LabelRE.MatchString(s) {
		if dns1123SubdomainRE.MatchString(s) {
			msgs = append(msgs, "must not contain dots")
		} else {
			msgs = append(msgs, regexError(dns1123LabelErrMsg, dns1123LabelFmt, "my-name", "123-abc"))
		}
	}
	return msgs
}

// dns1123Subdomain checks a DNS subdomain (RFC 1123), such as most object
// names.
func dns1123Subdomain(s string) []string {
	return subdomain(s, maxLenCharacters)
}

// subdomain checks a DNS subdomain, saying "too long" with tooLong.
func subdomain(s string, tooLong func(int) string) []string {
	var msgs []string
	if len(s) > maxDNSSubdomain {
		msgs = append(msgs, tooLong(maxDNSSubdomain))
	}
	if !dns1123SubdomainRE.MatchString(s) {
		msgs = append(msgs, regexError(dns1123SubdomainErrMsg, dns1123SubdomainFmt, "example.com"))
	}
	return msgs
}

// dns1035Label checks a DNS label (RFC 1035), such as a Service name.
func dns1035Label(s string) []string {
	var msgs []string
	if len(s) > maxDNSLabel {
		msgs = append(msgs, maxLenCharacters(maxDNSLabel))
	}
	if !dns1035LabelRE.MatchString(s) {
		msgs = append(msgs, regexError(dns1035LabelErrMsg, dns1035LabelFmt, "my-name", "abc-123"))
	}
	return msgs
}

// qualifiedName checks a label or annotation key: a name with an optional
// DNS subdomain prefix and '/'.
func qualifiedName(s string) []string {
	var msgs []string
	parts := strings.Split(s, "/")
	var name string
	switch len(parts) {
	case 1:
		name = parts[0]
	case 2:
		var prefix string
		prefix, name = parts[0], parts[1]
		if prefix == "" {
			msgs = append(msgs, "prefix part must be non-empty")
		} else {
			for _, m := range subdomain(prefix, maxLenBytes) {
				msgs = append(msgs, "prefix part "+m)
			}
		}
	default:
		return append(msgs, "a valid label key "+regexError(labelKeyErrMsg, labelKeyFmt, "MyName", "my.name", "123-abc")+
			" with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')")
	}
	if name == "" {
		msgs = append(msgs, "name part must be non-empty")
	} else if len(name) > maxLabelName {
		msgs = append(msgs, "name part "+maxLenBytes(maxLabelName))
	}
	if !labelKeyRE.MatchString(name) {
		msgs = append(msgs, "name part "+regexError(labelKeyErrMsg, labelKeyFmt, "MyName", "my.name", "123-abc"))
	}
	return msgs
}

// labelValue checks a label value (which may be empty).
func labelValue(s string) []string {
	var msgs []string
	if len(s) > maxLabelValue {
		msgs = append(msgs, maxLenBytes(maxLabelValue))
	}
	if !labelValueRE.MatchString(s) {
		msgs = append(msgs, regexError(labelValueErrMsg, labelValueFmt, "MyValue", "my_value", "12345"))
	}
	return msgs
}

// helmReleaseName reports whether Helm accepts s as a release name: a DNS
// subdomain of at most 53 bytes.
func helmReleaseName(s string) bool {
	return s != "" && len(s) <= maxHelmReleaseName && dns1123SubdomainRE.MatchString(s)
}

func maxLenCharacters(n int) string { return fmt.Sprintf("must be no more than %d characters", n) }

func maxLenBytes(n int) string { return fmt.Sprintf("must be no more than %d bytes", n) }

// regexError says that a name does not match re, with examples.
func regexError(msg, re string, examples ...string) string {
	var b strings.Builder
	b.WriteString(msg)
	b.WriteString(" (e.g. ")
	for i, e := range examples {
		if i > 0 {
			b.WriteString(" or ")
		}
		b.WriteString("'" + e + "', ")
	}
	b.WriteString("regex used for validation is '" + re + "')")
	return b.String()
}
