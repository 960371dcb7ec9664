package schema

// commonDocs describe the fields of prometheus/common's HTTP client
// settings for Guardian's users, by "importpath.Type.Field": they replace
// that package's doc comments, which are written for its programmers or
// missing. Relative *_file paths resolve against the config file's
// directory.
var commonDocs = map[string]string{
	commonPkg + ".HTTPClientConfig.BasicAuth":       "BasicAuth sends HTTP basic authentication (at most one of basic_auth, authorization, oauth2 and bearer_token).",
	commonPkg + ".HTTPClientConfig.Authorization":   "Authorization sends an Authorization header, such as a bearer token.",
	commonPkg + ".HTTPClientConfig.OAuth2":          "OAuth2 fetches a token with the OAuth2 client credentials (or JWT bearer) grant and sends it.",
	commonPkg + ".HTTPClientConfig.BearerToken":     "BearerToken is deprecated: use authorization.credentials.",
	commonPkg + ".HTTPClientConfig.BearerTokenFile": "BearerTokenFile is deprecated: use authorization.credentials_file.",
	commonPkg + ".HTTPClientConfig.TLSConfig":       "TLSConfig configures TLS: the CA to trust, a client certificate, the server name.",
	commonPkg + ".HTTPClientConfig.FollowRedirects": "FollowRedirects follows HTTP 3xx redirects (default true).",
	commonPkg + ".HTTPClientConfig.EnableHTTP2":     "EnableHTTP2 lets the client use HTTP/2 (default true).",
	commonPkg + ".HTTPClientConfig.HTTPHeaders":     "HTTPHeaders are headers added to every request, by name, such as X-Scope-OrgID for a Mimir, Cortex or Loki tenant. Headers the client sets itself (Authorization, User-Agent...) cannot be set.",

	commonPkg + ".ProxyConfig.ProxyURL":             "ProxyURL is the HTTP proxy to connect through, such as http://proxy:3128.",
	commonPkg + ".ProxyConfig.NoProxy":              "NoProxy lists the hosts, domains, IP addresses and CIDR ranges, comma-separated, reached without proxy_url.",
	commonPkg + ".ProxyConfig.ProxyFromEnvironment": "ProxyFromEnvironment takes the proxy from the HTTP_PROXY, HTTPS_PROXY and NO_PROXY environment variables (instead of proxy_url).",
	commonPkg + ".ProxyConfig.ProxyConnectHeader":   "ProxyConnectHeader are headers sent to the proxy with CONNECT requests, by name; their values are secrets.",

	commonPkg + ".BasicAuth.Username":     "Username is the user name.",
	commonPkg + ".BasicAuth.UsernameFile": "UsernameFile is a file holding the user name, read at each request.",
	commonPkg + ".BasicAuth.UsernameRef":  unsupportedRef,
	commonPkg + ".BasicAuth.Password":     "Password is the password; prefer password_file.",
	commonPkg + ".BasicAuth.PasswordFile": "PasswordFile is a file holding the password, read at each request.",
	commonPkg + ".BasicAuth.PasswordRef":  unsupportedRef,

	commonPkg + ".Authorization.Type":            "Type is the header's scheme (default Bearer; Basic is refused: use basic_auth).",
	commonPkg + ".Authorization.Credentials":     "Credentials follow the scheme in the header; prefer credentials_file.",
	commonPkg + ".Authorization.CredentialsFile": "CredentialsFile is a file holding the credentials, read at each request.",
	commonPkg + ".Authorization.CredentialsRef":  unsupportedRef,

	commonPkg + ".OAuth2.ClientID":                 "ClientID is the OAuth2 client ID.",
	commonPkg + ".OAuth2.ClientSecret":             "ClientSecret is the client secret; prefer client_secret_file.",
	commonPkg + ".OAuth2.ClientSecretFile":         "ClientSecretFile is a file holding the client secret.",
	commonPkg + ".OAuth2.ClientSecretRef":          unsupportedRef,
	commonPkg + ".OAuth2.ClientCertificateKeyID":   "ClientCertificateKeyID is the key ID (kid) of the key signing the JWT bearer grant.",
	commonPkg + ".OAuth2.ClientCertificateKey":     "ClientCertificateKey is the PEM key signing the JWT bearer grant; prefer client_certificate_key_file.",
	commonPkg + ".OAuth2.ClientCertificateKeyFile": "ClientCertificateKeyFile is a file holding the PEM key signing the JWT bearer grant.",
	commonPkg + ".OAuth2.ClientCertificateKeyRef":  unsupportedRef,
	commonPkg + ".OAuth2.GrantType":                `GrantType is client_credentials (default) or urn:ietf:params:oauth:grant-type:jwt-bearer (RFC 7523).`,
	commonPkg + ".OAuth2.SignatureAlgorithm":       "SignatureAlgorithm signs the JWT bearer grant: RS256 (default), RS384 or RS512.",
	commonPkg + ".OAuth2.Iss":                      "Iss is the JWT bearer grant's issuer (default: client_id).",
	commonPkg + ".OAuth2.Audience":                 "Audience is the JWT bearer grant's audience (default: token_url).",
	commonPkg + ".OAuth2.Claims":                   "Claims are added to the JWT bearer grant.",
	commonPkg + ".OAuth2.Scopes":                   "Scopes are the scopes the token is requested for.",
	commonPkg + ".OAuth2.TokenURL":                 "TokenURL is the URL tokens are fetched from.",
	commonPkg + ".OAuth2.EndpointParams":           "EndpointParams are parameters added to the token request.",
	commonPkg + ".OAuth2.TLSConfig":                "TLSConfig configures TLS to the token URL.",

	commonPkg + ".TLSConfig.CA":                 "CA is the PEM text of the CA certificates to trust (instead of the system's); prefer ca_file.",
	commonPkg + ".TLSConfig.Cert":               "Cert is the PEM text of the client certificate; prefer cert_file.",
	commonPkg + ".TLSConfig.Key":                "Key is the PEM text of the client certificate's key; prefer key_file.",
	commonPkg + ".TLSConfig.CAFile":             "CAFile is a PEM file of the CA certificates to trust (instead of the system's).",
	commonPkg + ".TLSConfig.CertFile":           "CertFile is the client certificate's PEM file, with key_file.",
	commonPkg + ".TLSConfig.KeyFile":            "KeyFile is the client certificate key's PEM file, with cert_file.",
	commonPkg + ".TLSConfig.CARef":              unsupportedRef,
	commonPkg + ".TLSConfig.CertRef":            unsupportedRef,
	commonPkg + ".TLSConfig.KeyRef":             unsupportedRef,
	commonPkg + ".TLSConfig.ServerName":         "ServerName is the name the server's certificate must have (default: the URL's host).",
	commonPkg + ".TLSConfig.InsecureSkipVerify": "InsecureSkipVerify accepts any server certificate: for tests only.",
	commonPkg + ".TLSConfig.MinVersion":         "MinVersion is the oldest TLS version accepted.",
	commonPkg + ".TLSConfig.MaxVersion":         "MaxVersion is the newest TLS version offered.",

	commonPkg + ".Headers":        "Headers are HTTP headers added to every request, by name.",
	commonPkg + ".Header":         "Header is the values of one header: each of values, secrets and files adds its values.",
	commonPkg + ".Header.Values":  "Values are the header's values.",
	commonPkg + ".Header.Secrets": "Secrets are values hidden when the configuration is shown.",
	commonPkg + ".Header.Files":   "Files hold values, read at each request.",
	commonPkg + ".ProxyHeader":    "ProxyHeader maps header names to their values.",
}

// unsupportedRef describes prometheus/common's *_ref fields, which name a
// secret in a secret manager: Guardian has none, so a client using one
// fails to build.
const unsupportedRef = "Not supported: Guardian has no secret manager; use the *_file field."

// configDocs replace the doc comments of package config that speak to its
// programmers rather than to users.
var configDocs = map[string]string{
	configPkg + ".Executor": "Executor is exactly one rollback backend: command, webhook, kubernetes, argo_rollouts or helm.",
}
