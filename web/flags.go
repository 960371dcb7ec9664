package web

import (
	"fmt"
	"net/url"
	"time"
)

// Flags are the HTTP server's command-line settings (guardian run --web.*).
type Flags struct {
	// ConfigFile is a web configuration file in the Prometheus
	// exporter-toolkit's format (tls_server_config, basic_auth_users,
	// http_server_config); "" serves plain HTTP.
	ConfigFile string
	// Reload says who may POST /-/reload.
	Reload ReloadAccess
	// ReadAuth says which reads need a token with the read scope.
	ReadAuth ReadAuth
	// ExternalURL, when set, is the URL people reach Guardian at; it
	// overrides global.external_url in links.
	ExternalURL string
	// StatusListenAddress, when set, serves the status page alone on this
	// address as well (Server.StatusHandler): public, whatever ReadAuth
	// says.
	StatusListenAddress string
	// Console are the web console's settings.
	Console ConsoleFlags
}

// ReloadAccess says who may request a reload over HTTP. It is a pflag.Value.
type ReloadAccess uint8

// The values of --web.reload.
const (
	// ReloadLoopback: a client on a loopback address needs no token, any
	// other needs one with the admin scope. The default.
	ReloadLoopback ReloadAccess = iota
	// ReloadAuthenticated: every client needs a token with the admin scope.
	ReloadAuthenticated
	// ReloadOff: POST /-/reload is refused (SIGHUP and file changes still
	// reload).
	ReloadOff
)

var reloadNames = []string{"loopback", "authenticated", "off"}

func (a ReloadAccess) String() string {
	if int(a) < len(reloadNames) {
		return reloadNames[a]
	}
	return fmt.Sprintf("ReloadAccess(%d)", a)
}

// Set parses loopback, authenticated or off.
func (a *ReloadAccess) Set(s string) error {
	for i, n := range reloadNames {
		if s == n {
			*a = ReloadAccess(i)
			return nil
		}
	}
	return fmt.Errorf("want loopback, authenticated or off, got %q", s)
}

// Type names the flag's type in help texts.
func (a *ReloadAccess) Type() string { return "mode" }

// ReadAuth says which read endpoints need a token with the read scope.
// /-/healthy and /-/ready stay open for probes whatever it says. It is a
// pflag.Value.
type ReadAuth uint8

// The values of --web.read-auth.
const (
	// ReadOpen: reads need no token. The default.
	ReadOpen ReadAuth = iota
	// ReadAuthAPI: GET /api/v1/... needs a token; /metrics stays open.
	ReadAuthAPI
	// ReadAuthAll: GET /api/v1/..., /metrics and the status page on the
	// main listener need a token.
	ReadAuthAll
)

var readAuthNames = []string{"open", "api", "all"}

func (a ReadAuth) String() string {
	if int(a) < len(readAuthNames) {
		return readAuthNames[a]
	}
	return fmt.Sprintf("ReadAuth(%d)", a)
}

// Set parses open, api or all.
func (a *ReadAuth) Set(s string) error {
	for i, n := range readAuthNames {
		if s == n {
			*a = ReadAuth(i)
			return nil
		}
	}
	return fmt.Errorf("want open, api or all, got %q", s)
}

// Type names the flag's type in help texts.
func (a *ReadAuth) Type() string { return "scope" }

// Limits bound the HTTP server's timeouts and sizes. A zero field takes
// its default, the Default* constant of the same name.
type Limits struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the
	// end of its response.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int
	// MaxBodyBytes bounds a request's body; a larger one gets 413.
	MaxBodyBytes int64
}

// The default limits.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 2 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxBodyBytes      = 64 << 10
)

func (l Limits) withDefaults() Limits {
	set := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	set(&l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	set(&l.ReadTimeout, DefaultReadTimeout)
	set(&l.WriteTimeout, DefaultWriteTimeout)
	set(&l.IdleTimeout, DefaultIdleTimeout)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	return l
}

// ValidateExternalURL checks an --web.external-url value: an absolute http
// or https URL without a query or fragment.
func ValidateExternalURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("invalid URL %q: want an absolute http or https URL without a query", s)
	}
	return nil
}
