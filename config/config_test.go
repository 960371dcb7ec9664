package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wants returns the "# want: " lines at the top of a bad config.
func wants(t *testing.T, data []byte) []string {
	t.Helper()
	var w []string
	for _, line := range strings.Split(string(data), "\n") {
		msg, ok := strings.CutPrefix(line, "# want: ")
		if !ok {
			break
		}
		w = append(w, msg)
	}
	if len(w) == 0 {
		t.Fatal("no '# want: ' line at the top of the file")
	}
	return w
}

// needs returns the build tag that left out of this build a feature a bad
// config needs ("# needs: kubernetes" or "helm" after its "# want: "
// lines), or "".
func needs(t *testing.T, data []byte) string {
	t.Helper()
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "# ") {
			break
		}
		feature, ok := strings.CutPrefix(line, "# needs: ")
		if !ok {
			continue
		}
		switch feature, _, _ = strings.Cut(feature, " "); feature {
		case "kubernetes":
			return kubernetesLeftOut
		case "helm":
			return helmTag()
		default:
			t.Fatalf("unknown feature %q", feature)
		}
	}
	return ""
}

func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 22 {
		t.Fatalf("only %d bad configs", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".bad.yml"), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			want := wants(t, data)
			if tag := needs(t, data); tag != "" {
				t.Skipf("a build with -tags %s rejects it as a slim build (TestSlimBuild)", tag)
			}
			cfg, raw, err := LoadFile(file)
			if err == nil {
				t.Fatalf("loaded without error: %+v", cfg)
			}
			if string(raw) != string(data) {
				t.Error("LoadFile did not return the raw bytes")
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			got := make([]string, len(es))
			for i, e := range es {
				got[i] = e.Error()
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		})
	}
}

func TestFullExample(t *testing.T) {
	cfg, raw, err := LoadFile("testdata/good/full.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 {
		t.Fatal("no raw bytes")
	}
	g := cfg.Global
	if g.EvaluationInterval.Std() != 5*time.Second || g.ListenAddress != "127.0.0.1:9095" ||
		g.StateDir != "./data" || g.QueryTimeout.Std() != 10*time.Second || g.SourceAlertAfter.Std() != 5*time.Minute {
		t.Errorf("global = %+v", g)
	}
	if want := filepath.Join("testdata", "good", "secrets", "tokens"); g.Auth.TokensFile != want {
		t.Errorf("tokens_file = %q, want %q (resolved against the file's directory)", g.Auth.TokensFile, want)
	}

	if len(cfg.Sources) != 1 {
		t.Fatalf("sources = %d", len(cfg.Sources))
	}
	src := cfg.Sources[0]
	p := src.Prometheus
	if src.Name != "mimir" || p == nil || p.URL != "http://127.0.0.1:9009/prometheus" || p.Timeout.Std() != 15*time.Second {
		t.Fatalf("source = %+v %+v", src, p)
	}
	hc := p.HTTPClientConfig
	if !hc.FollowRedirects || !hc.EnableHTTP2 {
		t.Errorf("http client defaults not applied: follow_redirects=%v enable_http2=%v", hc.FollowRedirects, hc.EnableHTTP2)
	}
	if hc.BasicAuth == nil || hc.BasicAuth.Username != "guardian" ||
		hc.BasicAuth.PasswordFile != filepath.Join("testdata", "good", "secrets", "prometheus-password") {
		t.Errorf("basic_auth = %+v", hc.BasicAuth)
	}
	if hc.HTTPHeaders == nil || !slices.Equal(hc.HTTPHeaders.Headers["X-Scope-OrgID"].Values, []string{"shop"}) {
		t.Errorf("http_headers = %+v", hc.HTTPHeaders)
	}

	if len(cfg.Services) != 2 {
		t.Fatalf("services = %d", len(cfg.Services))
	}
	co := cfg.Services[0]
	if co.Name != "checkout" || co.Source != "" || co.Scrape == nil {
		t.Fatalf("checkout = %+v", co)
	}
	if co.Scrape.URL != "http://127.0.0.1:8080/metrics" || co.Scrape.Interval.Std() != 5*time.Second || co.Scrape.Timeout.Std() != 5*time.Second {
		t.Errorf("scrape = %+v", co.Scrape)
	}
	if co.Deploy.VersionLabel != "version" || !strings.Contains(co.Deploy.VersionQuery, "sum by (version)") {
		t.Errorf("deploy = %+v", co.Deploy)
	}
	if co.WatchWindow.Std() != 30*time.Minute || !slices.Equal(co.Notify, []string{"oncall"}) {
		t.Errorf("watch_window %v, notify %v", co.WatchWindow, co.Notify)
	}
	if len(co.Triggers) != 2 {
		t.Fatalf("checkout triggers = %d", len(co.Triggers))
	}
	er := co.Triggers[0]
	if er.Name != "error-rate" || er.Above == nil || *er.Above != 0.05 || er.Below != nil ||
		er.AboveBaseline == nil || er.AboveBaseline.Ratio != 2 || er.For.Std() != 30*time.Second ||
		er.Window.Std() != time.Minute || er.MinRequests != 50 || er.VolumeQuery == "" ||
		er.OnNoData != PolicyIgnore || er.OnQueryError != PolicyIgnore || er.Severity != "SEV-1" {
		t.Errorf("error-rate = %+v", er)
	}
	if !strings.Contains(er.Query, "\n/\n") {
		t.Errorf("multi-line query not kept: %q", er.Query)
	}
	lat := co.Triggers[1]
	if lat.AboveBaseline == nil || lat.AboveBaseline.IsRatio() || lat.AboveBaseline.Delta != 0.25 ||
		lat.Window.Std() != 2*time.Minute || lat.Severity != "SEV-2" || lat.OnNoData != PolicyIgnore {
		t.Errorf("p99-latency = %+v", lat)
	}

	pay := cfg.Services[1]
	if pay.Name != "payments" || pay.Source != "mimir" || pay.Scrape != nil ||
		pay.Deploy.VersionLabel != "app_version" || pay.Deploy.MinTraffic != 0.5 || pay.WatchWindow.Std() != time.Hour {
		t.Errorf("payments = %+v", pay)
	}
	if len(pay.Triggers) != 2 {
		t.Fatalf("payments triggers = %d", len(pay.Triggers))
	}
	sr := pay.Triggers[0]
	if sr.Below == nil || *sr.Below != 0.99 || sr.Above != nil || sr.AboveBaseline != nil ||
		sr.OnNoData != PolicyFire || sr.OnQueryError != PolicyFire || sr.For.Std() != time.Minute || sr.SlowerThan != nil {
		t.Errorf("success-ratio = %+v", sr)
	}
	slow := pay.Triggers[1]
	if slow.SlowerThan == nil || slow.SlowerThan.Std() != 500*time.Millisecond || slow.Sequential == nil ||
		!strings.Contains(slow.Sequential.Errors, `le="0.5"`) || slow.Sequential.Alpha != DefaultSequentialAlpha {
		t.Errorf("slow-requests = %+v (sequential %+v)", slow, slow.Sequential)
	}

	if len(cfg.Notifiers) != 1 {
		t.Fatalf("notifiers = %d", len(cfg.Notifiers))
	}
	wh := cfg.Notifiers[0].Webhook
	if cfg.Notifiers[0].Name != "oncall" || wh == nil || wh.URL != "https://hooks.example.invalid/guardian" {
		t.Fatalf("notifier = %+v", cfg.Notifiers[0])
	}
	if wh.Secret != "s3cr3t-hmac-key-0123" {
		t.Errorf("webhook secret = %q, want the trimmed file content", string(wh.Secret))
	}
	if wh.SecretFile != filepath.Join("testdata", "good", "secrets", "webhook-hmac") {
		t.Errorf("secret_file = %q", wh.SecretFile)
	}
	if len(cfg.Checksum()) != 64 {
		t.Errorf("checksum = %q", cfg.Checksum())
	}
}

// minimal is the smallest valid configuration.
const minimal = `
services:
  - name: checkout
    scrape: { url: "http://127.0.0.1:8080/metrics" }
    triggers:
      - name: errors
        query: 'up{version="{{.Version}}"}'
        below: 1
`

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal + `
sources:
  - name: prom
    prometheus: { url: "http://127.0.0.1:9090" }
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"evaluation_interval", cfg.Global.EvaluationInterval, DefaultEvaluationInterval},
		{"listen_address", cfg.Global.ListenAddress, "127.0.0.1:9095"},
		{"state_dir", cfg.Global.StateDir, "./data"},
		{"query_timeout", cfg.Global.QueryTimeout, Duration(10 * time.Second)},
		{"source_alert_after", cfg.Global.SourceAlertAfter, Duration(2 * time.Minute)},
		{"tokens_file", cfg.Global.Auth.TokensFile, ""},
		{"scrape.interval", cfg.Services[0].Scrape.Interval, Duration(5 * time.Second)},
		{"scrape.timeout", cfg.Services[0].Scrape.Timeout, Duration(5 * time.Second)},
		{"watch_window", cfg.Services[0].WatchWindow, Duration(30 * time.Minute)},
		{"version_label", cfg.Services[0].Deploy.VersionLabel, "version"},
		{"trigger.window", cfg.Services[0].Triggers[0].Window, Duration(time.Minute)},
		{"trigger.for", cfg.Services[0].Triggers[0].For, Duration(0)},
		{"on_no_data", cfg.Services[0].Triggers[0].OnNoData, PolicyIgnore},
		{"on_query_error", cfg.Services[0].Triggers[0].OnQueryError, PolicyIgnore},
		{"severity", cfg.Services[0].Triggers[0].Severity, "SEV-1"},
		{"prometheus.timeout", cfg.Sources[0].Prometheus.Timeout, Duration(10 * time.Second)},
		{"follow_redirects", cfg.Sources[0].Prometheus.HTTPClientConfig.FollowRedirects, true},
		{"enable_http2", cfg.Sources[0].Prometheus.HTTPClientConfig.EnableHTTP2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestScrapeTimeoutDefault(t *testing.T) {
	for _, tc := range []struct {
		interval, timeout string
		want              time.Duration
	}{
		{"", "", 5 * time.Second},
		{"30s", "", 10 * time.Second}, // capped at 10s
		{"2s", "", 2 * time.Second},
		{"30s", "20s", 20 * time.Second},
	} {
		t.Run(tc.interval+"/"+tc.timeout, func(t *testing.T) {
			s := "\n    scrape:\n      url: http://127.0.0.1:8080/metrics\n"
			if tc.interval != "" {
				s += "      interval: " + tc.interval + "\n"
			}
			if tc.timeout != "" {
				s += "      timeout: " + tc.timeout + "\n"
			}
			cfg, err := Parse([]byte(strings.Replace(minimal, `
    scrape: { url: "http://127.0.0.1:8080/metrics" }
`, s, 1)))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Services[0].Scrape.Timeout.Std(); got != tc.want {
				t.Errorf("timeout = %v, want %v", got, tc.want)
			}
		})
	}
}

// global.source_alert_after defaults to 2m; 0 turns the alert off; a
// value that is not a non-negative duration is an error naming the field
// and its line.
func TestSourceAlertAfter(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        time.Duration
		err         string
	}{
		{"default", "", 2 * time.Minute, ""},
		{"set", "30s", 30 * time.Second, ""},
		{"off", "0", 0, ""},
		{"negative", "-1m", 0, `global.source_alert_after: invalid duration "-1m": must not be negative (line 3)`},
		{"not a duration", "soon", 0, `global.source_alert_after: invalid duration "soon" (line 3)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := minimal
			if tc.value != "" {
				text = "\nglobal:\n  source_alert_after: " + tc.value + "\n" + minimal
			}
			cfg, err := Parse([]byte(text))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Global.SourceAlertAfter.Std(); got != tc.want {
				t.Errorf("source_alert_after = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"0", 0, ""},
		{"30s", 30 * time.Second, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"2d", 48 * time.Hour, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{"3x", 0, `invalid duration "3x"`},
		{"-5m", 0, `invalid duration "-5m": must not be negative`},
		{"5", 0, `invalid duration "5"`},
		{"[1]", 0, `want a duration, got a list`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte("v: "+tc.in), &n); err != nil {
				t.Fatal(err)
			}
			var d Duration
			err := d.UnmarshalYAML(n.Content[0].Content[1])
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Std() != tc.want {
				t.Fatalf("got %v, want %v", d.Std(), tc.want)
			}
			out, err := yaml.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			var back Duration
			if err := yaml.Unmarshal(out, &back); err != nil || back != d {
				t.Fatalf("round trip via %q gave %v, %v", out, back, err)
			}
		})
	}
}

func TestBaselineLimit(t *testing.T) {
	for _, tc := range []struct {
		in            string
		ratio, delta  float64
		baseline, thr float64
		wantErr       bool
	}{
		{in: "2x", ratio: 2, baseline: 0.01, thr: 0.02},
		{in: "1.5x", ratio: 1.5, baseline: 2, thr: 3},
		{in: "+0.02", delta: 0.02, baseline: 0.01, thr: 0.03},
		{in: "+0", delta: 0, baseline: 0.5, thr: 0.5},
		{in: "abc", wantErr: true},
		{in: "2", wantErr: true},
		{in: "0x", wantErr: true},
		{in: "-1x", wantErr: true},
		{in: "-0.02", wantErr: true},
		{in: "++1", wantErr: true},
		{in: "infx", wantErr: true},
		{in: "x", wantErr: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			b, err := ParseBaselineLimit(tc.in)
			if tc.wantErr {
				want := `invalid baseline limit "` + tc.in + `": want a ratio like 2x or a delta like +0.02`
				if err == nil || err.Error() != want {
					t.Fatalf("got %v, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Ratio != tc.ratio || b.Delta != tc.delta || b.String() != tc.in {
				t.Fatalf("got %+v", b)
			}
			if got := b.Threshold(tc.baseline); got != tc.thr {
				t.Fatalf("Threshold(%v) = %v, want %v", tc.baseline, got, tc.thr)
			}
		})
	}
}

func TestNoDataPolicy(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    NoDataPolicy
		wantErr string
	}{
		{"ignore", PolicyIgnore, ""},
		{"fire", PolicyFire, ""},
		{"Fire", "", `invalid policy "Fire": want ignore or fire`},
		{"{a: 1}", "", "want ignore or fire, got a mapping"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte("v: "+tc.in), &n); err != nil {
				t.Fatal(err)
			}
			var p NoDataPolicy
			err := p.UnmarshalYAML(n.Content[0].Content[1])
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || p != tc.want || p.String() != tc.in {
				t.Fatalf("got %v, %v", p, err)
			}
		})
	}
}

// TestHTTPClientConfig checks that prometheus/common's nested types, whose
// yaml.v2-style unmarshalers yaml.v3 still honours, decode through our
// walker, and that their validation runs although HTTPClientConfig is inline.
func TestHTTPClientConfig(t *testing.T) {
	cfg, err := Parse([]byte(minimal + `
sources:
  - name: prom
    prometheus:
      url: https://prom.example.invalid
      follow_redirects: false
      authorization:
        credentials: tok3n
      tls_config:
        insecure_skip_verify: true
        min_version: TLS12
        server_name: prom.internal
      proxy_url: http://127.0.0.1:3128
      http_headers:
        X-Scope-OrgID:
          secrets: [tenant-1]
`))
	if err != nil {
		t.Fatal(err)
	}
	hc := cfg.Sources[0].Prometheus.HTTPClientConfig
	if hc.FollowRedirects || !hc.EnableHTTP2 {
		t.Errorf("follow_redirects=%v enable_http2=%v, want false, true", hc.FollowRedirects, hc.EnableHTTP2)
	}
	if hc.Authorization == nil || hc.Authorization.Credentials != "tok3n" || hc.Authorization.Type != "Bearer" {
		t.Errorf("authorization = %+v (Validate should default the type)", hc.Authorization)
	}
	if !hc.TLSConfig.InsecureSkipVerify || hc.TLSConfig.MinVersion != commoncfg.TLSVersions["TLS12"] || hc.TLSConfig.ServerName != "prom.internal" {
		t.Errorf("tls_config = %+v", hc.TLSConfig)
	}
	if hc.ProxyURL.URL == nil || hc.ProxyURL.Host != "127.0.0.1:3128" {
		t.Errorf("proxy_url = %v", hc.ProxyURL)
	}
	if got := hc.HTTPHeaders.Headers["X-Scope-OrgID"].Secrets; len(got) != 1 || got[0] != "tenant-1" {
		t.Errorf("header secrets = %v", got)
	}

	for _, tc := range []struct{ name, yaml, want string }{
		// The option is on line 14; errors found by Validate() name the
		// prometheus key, on line 12.
		{"unknown tls field", "tls_config: { insecure: true }", "sources[0].prometheus.tls_config.insecure: unknown field (line 14)"},
		{"bad tls version", "tls_config: { min_version: TLS99 }", `sources[0].prometheus.tls_config.min_version: unknown TLS version: TLS99 (line 14)`},
		{"tls key without cert", "tls_config: { key: k }", "sources[0].prometheus.tls_config: exactly one of cert or cert_file must be configured when a client key is configured (line 14)"},
		{"reserved header", "http_headers: { Authorization: { values: [x] } }", `sources[0].prometheus: setting header "Authorization" is not allowed (line 12)`},
		{"missing password file", "basic_auth: { username: u, password_file: nope }", `sources[0].prometheus.basic_auth.password_file: cannot read "nope": no such file or directory (line 14)`},
		{"string for bool", "enable_http2: maybe", `sources[0].prometheus.enable_http2: want a boolean, got string "maybe" (line 14)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(minimal + `
sources:
  - name: prom
    prometheus:
      url: http://127.0.0.1:9090
      ` + tc.yaml + "\n"))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestSecretsHidden(t *testing.T) {
	dir := t.TempDir()
	const hmac = "hmac-VALUE-9f8e7d"
	if err := os.WriteFile(filepath.Join(dir, "hmac"), []byte(hmac+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.yml")
	secrets := []string{hmac, "hunter2-PASSWORD", "tenant-SECRET", "urlpass-SECRET", "hooktoken-SECRET", "proxy-SECRET", "bearer-SECRET", "query-SECRET"}
	if err := os.WriteFile(path, []byte(minimal+`
    notify: [oncall, slack]
sources:
  - name: prom
    prometheus:
      url: http://guardian:urlpass-SECRET@127.0.0.1:9090
      basic_auth: { username: guardian, password: hunter2-PASSWORD }
      proxy_url: http://127.0.0.1:3128
      proxy_connect_header: { Proxy-Authorization: [proxy-SECRET] }
      http_headers:
        X-Scope-OrgID: { secrets: [tenant-SECRET] }
  - name: prom2
    prometheus:
      url: http://127.0.0.1:9091/select?api_key=query-SECRET
      authorization: { credentials: bearer-SECRET }
notifiers:
  - name: oncall
    webhook: { url: "https://hooks.example.invalid/services/hooktoken-SECRET?x=1", secret_file: hmac }
  - name: slack
    webhook: { url: "https://127.0.0.1:9/" }
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.Notifiers[0].Webhook.Secret) != hmac {
		t.Fatalf("secret not loaded: %q", string(cfg.Notifiers[0].Webhook.Secret))
	}
	marshalled, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"String": cfg.String(), "yaml.Marshal": string(marshalled)} {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s output contains secret %q:\n%s", name, s, out)
			}
		}
		for _, want := range []string{"password: <secret>", "- <secret>", "http://guardian:xxxxx@127.0.0.1:9090", "https://hooks.example.invalid/<secret>", "url: https://127.0.0.1:9/", "http://127.0.0.1:9091/select?api_key=xxxxx"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s output lacks %q:\n%s", name, want, out)
			}
		}
	}
	// The output is itself YAML.
	var back map[string]any
	if err := yaml.Unmarshal([]byte(cfg.String()), &back); err != nil {
		t.Fatalf("String() is not YAML: %v", err)
	}
	// Marshalling did not redact the live configuration.
	if cfg.Sources[0].Prometheus.URL != "http://guardian:urlpass-SECRET@127.0.0.1:9090" ||
		string(cfg.Sources[0].Prometheus.HTTPClientConfig.BasicAuth.Password) != "hunter2-PASSWORD" {
		t.Error("String() changed the configuration")
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "s"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"s/hmac", "s/tokens", "s/pw", "s/ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	abs := filepath.Join(dir, "s", "tokens")
	path := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(path, []byte(`
global:
  state_dir: state
  auth: { tokens_file: `+abs+` }
sources:
  - name: prom
    prometheus:
      url: http://127.0.0.1:9090
      basic_auth: { username: u, password_file: s/pw }
      tls_config: { ca_file: s/ca.pem }
notifiers:
  - name: oncall
    webhook: { url: "https://127.0.0.1:9/", secret_file: s/hmac }
`+minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hc := cfg.Sources[0].Prometheus.HTTPClientConfig
	for _, tc := range []struct{ name, got, want string }{
		{"secret_file", cfg.Notifiers[0].Webhook.SecretFile, filepath.Join(dir, "s", "hmac")},
		{"absolute tokens_file", cfg.Global.Auth.TokensFile, abs},
		{"password_file", hc.BasicAuth.PasswordFile, filepath.Join(dir, "s", "pw")},
		{"ca_file", hc.TLSConfig.CAFile, filepath.Join(dir, "s", "ca.pem")},
		{"state_dir stays relative to the working directory", cfg.Global.StateDir, "state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}

	// Parse has no file: relative paths are relative to the working directory.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(data)
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("Parse: want 3 unreadable files relative to the working directory, got %v", err)
	}
}

func TestAnchorsAndMerge(t *testing.T) {
	_, err := Parse([]byte(`
x-trigger: &errors
  name: errors
  query: 'up{version="{{.Version}}"}'
  below: 1
  for: 1m
services:
  - name: a
    scrape: { url: "http://127.0.0.1:8080/metrics" }
    triggers: [*errors]
  - name: b
    scrape: { url: "http://127.0.0.1:8081/metrics" }
    triggers:
      - <<: *errors
        for: 2m
`))
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Path != "x-trigger" || es[0].Msg != "unknown field" {
		t.Fatalf("want only x-trigger to be unknown, got %v", err)
	}

	cfg, err := Parse([]byte(`
services:
  - name: a
    scrape: &scrape { url: "http://127.0.0.1:8080/metrics" }
    triggers:
      - &errors
        name: errors
        query: 'up{version="{{.Version}}"}'
        below: 1
        for: 1m
  - name: b
    scrape: *scrape
    triggers:
      - <<: *errors
        for: 2m
`))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Services[1]
	if b.Scrape.URL != "http://127.0.0.1:8080/metrics" {
		t.Errorf("alias not followed: %+v", b.Scrape)
	}
	if tr := b.Triggers[0]; tr.Name != "errors" || tr.For.Std() != 2*time.Minute || tr.Below == nil || *tr.Below != 1 {
		t.Errorf("merged trigger = %+v", tr)
	}
	if tr := cfg.Services[0].Triggers[0]; tr.For.Std() != time.Minute {
		t.Errorf("anchored trigger changed by the merge: %+v", tr)
	}
}

func TestChecksum(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "hmac")
	path := filepath.Join(dir, "config.yml")
	body := minimal + `
notifiers:
  - name: oncall
    webhook: { url: "https://127.0.0.1:9/", secret_file: hmac }
`
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(name, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	load := func() string {
		t.Helper()
		cfg, _, err := LoadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Checksum()
	}
	write(secret, "one")
	write(path, body)
	first := load()
	if again := load(); again != first {
		t.Fatal("checksum not stable")
	}
	write(secret, "two")
	if load() == first {
		t.Error("a rotated secret file did not change the checksum")
	}
	write(secret, "one")
	write(path, body+"# a comment\n")
	if load() == first {
		t.Error("a changed file did not change the checksum")
	}
}

func TestFieldErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{Path: "a.b", Line: 3, Msg: "bad"}, "a.b: bad (line 3)"},
		{FieldError{Path: "a.b", Msg: "bad"}, "a.b: bad"},
		{FieldError{Line: 3, Msg: "bad"}, "bad (line 3)"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	es := Errors{{Path: "a", Line: 2, Msg: "x"}, {Path: "b", Line: 5, Msg: "y"}}
	if got, want := es.Error(), "a: x (line 2)\nb: y (line 5)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
