package config

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse decodes and validates a configuration. Relative *_file paths are
// relative to the working directory; use LoadFile to make them relative to
// the file. Referenced secret files are read. The error, if any, is Errors,
// listing every problem with its field path and line.
func Parse(data []byte) (*Config, error) {
	return parse(data, "")
}

// LoadFile reads, decodes and validates the configuration file at path.
// Relative *_file paths in it (secret_file, tokens_file, password_file and
// the other prometheus/common *_file fields) are resolved against the file's
// directory. It also returns the raw bytes, when they could be read. A
// decoding or validation error is Errors.
func LoadFile(path string) (*Config, []byte, error) {
	data, err := readLimited(path)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := parseFile(path, data)
	return cfg, data, err
}

// parseFile parses data, read from path by readLimited.
func parseFile(path string, data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		n := int64(len(data))
		if st, err := os.Stat(path); err == nil && st.Size() > n {
			n = st.Size()
		}
		return nil, tooLarge(n)
	}
	return parse(data, filepath.Dir(path))
}

func parse(data []byte, dir string) (*Config, error) {
	cfg := &Config{}
	cfg.setDefaults()
	d := newDecoder()
	if !d.document(data, cfg) {
		// The document itself is unusable (syntax error, empty, not a
		// mapping, beyond the limits).
		return nil, d.errs
	}
	if len(d.errs) >= MaxErrors {
		// The file is badly broken (or hostile): the decoding errors say
		// enough, and checking what was decoded would only add noise.
		sortErrors(d.errs)
		return nil, capErrors(d.errs, d.dropped)
	}
	v := newValidator(d, dir)
	v.sum.Write(data)
	v.config(cfg)
	errs := append(d.errs, v.errs...)
	if len(errs) > 0 {
		sortErrors(errs)
		return nil, capErrors(errs, d.dropped+v.dropped)
	}
	sortWarnings(v.warns)
	cfg.Warnings = v.warns
	cfg.checksum = hex.EncodeToString(v.sum.Sum(nil))
	return cfg, nil
}

// Checksum is the SHA-256 of the file and of the secret files read while
// loading it, in hex. Equal checksums mean equal configurations.
func (c *Config) Checksum() string { return c.checksum }

// String returns c as YAML with secrets hidden (see MarshalYAML). It is
// meant for the /config page.
func (c *Config) String() string {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return fmt.Sprintf("# error marshalling configuration: %v\n", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Sprintf("# error marshalling configuration: %v\n", err)
	}
	return b.String()
}

// MarshalYAML returns a copy of c with secrets hidden: Secret fields print
// as <secret>, webhook secrets are left out, passwords and query values in
// URLs become xxxxx and webhook URL paths and queries, which often carry
// tokens, become <secret>.
func (c Config) MarshalYAML() (any, error) {
	type plain Config // without this method
	r := plain(c)
	r.Sources = make([]Source, len(c.Sources))
	for i, s := range c.Sources {
		if s.Prometheus != nil {
			p := *s.Prometheus
			p.URL = redactURL(p.URL, false)
			s.Prometheus = &p
		}
		r.Sources[i] = s
	}
	r.Services = make([]Service, len(c.Services))
	for i, s := range c.Services {
		if s.Scrape != nil {
			sc := *s.Scrape
			sc.URL = redactURL(sc.URL, false)
			s.Scrape = &sc
		}
		r.Services[i] = s
	}
	r.Notifiers = make([]Notifier, len(c.Notifiers))
	for i, n := range c.Notifiers {
		if n.Webhook != nil {
			w := *n.Webhook
			w.URL = redactURL(w.URL, true)
			w.Secret = ""
			n.Webhook = &w
		}
		if a := n.Alertmanager; a != nil {
			c := *a
			c.URLs = make([]string, len(a.URLs))
			for j, u := range a.URLs {
				c.URLs[j] = redactURL(u, false)
			}
			n.Alertmanager = &c
		}
		if s := n.Slack; s != nil {
			c := *s
			c.Token, c.SigningSecret = "", ""
			n.Slack = &c
		}
		if d := n.PagerDuty; d != nil {
			c := *d
			c.RoutingKey = ""
			n.PagerDuty = &c
		}
		if t := n.Teams; t != nil {
			c := *t
			c.URL = ""
			n.Teams = &c
		}
		if s := n.Statuspage; s != nil {
			c := *s
			c.APIKey = ""
			n.Statuspage = &c
		}
		r.Notifiers[i] = n
	}
	return &r, nil
}

// redactURL hides a URL's password and, if all is set, its path and query.
func redactURL(s string, all bool) string {
	u, err := url.Parse(s)
	if err != nil {
		if all {
			return "<secret>"
		}
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	if all && (strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "") {
		u.Path, u.RawPath, u.RawQuery, u.Fragment = "/<secret>", "", "", ""
		return strings.Replace(u.String(), "/%3Csecret%3E", "/<secret>", 1)
	}
	if u.RawQuery != "" {
		// A query often carries a token (?token=, ?api_key=): keep the keys.
		q := u.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}
