package web

import (
	"net/url"
	"regexp"
	"strings"
)

// secretText replaces what may be secret, as prometheus/common's
// config.Secret prints itself.
const secretText = "<secret>"

// urlRE finds URLs in free text: a scheme, "://" and everything up to a
// space or a quote.
var urlRE = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>` + "`" + `]+`)

// RedactURLs replaces the parts of every URL in s that may hold a secret:
// the user information (user:password@), the path (webhook URLs such as
// Slack's carry their secret there), and the query (parameter names may be secrets too).
// Scheme, host and port stay, so an error still says which URL is wrong; a
// URL that does not parse is replaced whole.
func RedactURLs(s string) string {
	return urlRE.ReplaceAllStringFunc(s, redactURL)
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" {
		return secretText
	}
	var b strings.Builder
	b.WriteString(u.Scheme + "://")
	if u.User != nil {
		b.WriteString(secretText + "@")
	}
	b.WriteString(u.Host)
	if u.Path != "" && u.Path != "/" || u.RawPath != "" {
		b.WriteString("/" + secretText)
	} else {
		b.WriteString(u.Path)
	}
	if u.RawQuery != "" || u.ForceQuery {
		b.WriteString("?" + secretText)
	}
	return b.String()
}
