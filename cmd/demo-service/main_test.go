package main

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/demo"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    options
		wantErr string
	}{
		{"defaults", nil, options{
			listen:  "127.0.0.1:8080",
			version: demo.Version{Version: "v1", Weight: 1, ErrorRate: 0.005, Latency: 20 * time.Millisecond},
		}, ""},
		{"all flags", []string{"--listen", ":9000", "--version", "v2", "--error-rate", "0.2", "--latency", "0s", "--load-rps", "50", "--seed", "7"}, options{
			listen:  ":9000",
			version: demo.Version{Version: "v2", Weight: 1, ErrorRate: 0.2},
			loadRPS: 50,
			seed:    7,
		}, ""},
		{"error rate out of range", []string{"--error-rate", "1.5"}, options{}, "error_rate must be within [0, 1], got 1.5"},
		{"negative latency", []string{"--latency", "-1s"}, options{}, "latency must be within"},
		{"empty version", []string{"--version", ""}, options{}, "version name must not be empty"},
		{"negative load", []string{"--load-rps", "-1"}, options{}, "--load-rps must be within [0, 100000], got -1"},
		{"listen without port", []string{"--listen", "localhost"}, options{}, `--listen "localhost"`},
		{"positional argument", []string{"serve"}, options{}, `unexpected arguments ["serve"]`},
		{"unknown flag", []string{"--nope"}, options{}, "usage error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("options = %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := parseFlags([]string{"--nope"}, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("unknown flag: error %v, want errUsage", err)
	}
}

func TestSelfAddress(t *testing.T) {
	tests := []struct {
		name string
		addr net.Addr
		want string
	}{
		{"loopback", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "127.0.0.1:8080"},
		{"IPv4 unspecified", &net.TCPAddr{IP: net.IPv4zero, Port: 8080}, "127.0.0.1:8080"},
		{"IPv6 unspecified", &net.TCPAddr{IP: net.IPv6unspecified, Port: 9}, "127.0.0.1:9"},
		{"IPv6 loopback", &net.TCPAddr{IP: net.IPv6loopback, Port: 9}, "[::1]:9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := selfAddress(tc.addr); got != tc.want {
				t.Errorf("selfAddress(%v) = %q, want %q", tc.addr, got, tc.want)
			}
		})
	}
}
