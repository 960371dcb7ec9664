package executor_test

import (
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/rollback-guardian/guardian/executor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTemplate(t *testing.T) {
	target := executor.Target{
		Incident:       12,
		Service:        "checkout",
		Version:        `v2.4.1 "; rm -rf / #`,
		Baseline:       "v2.4.0",
		Step:           executor.StepApplication,
		IdempotencyKey: executor.IdempotencyKey(12, executor.StepApplication),
		Reason:         "5xx 7.9% > 5%",
	}
	tests := []struct {
		name    string
		args    []string
		want    []string
		wantErr string
	}{
		{
			name: "every key",
			args: []string{"--incident={{.Incident}}", "{{.Service}}", "{{.Version}}", "{{.Baseline}}", "{{.Step}}", "{{.IdempotencyKey}}"},
			want: []string{"--incident=12", "checkout", `v2.4.1 "; rm -rf / #`, "v2.4.0", "application", "incident-12/rollback.application"},
		},
		{
			name: "plain arguments are copied",
			args: []string{"rollout", "undo", "{not a template}"},
			want: []string{"rollout", "undo", "{not a template}"},
		},
		{
			name: "several keys in one argument",
			args: []string{"{{.Service}}@{{.Baseline}}"},
			want: []string{"checkout@v2.4.0"},
		},
		{
			name:    "unknown key",
			args:    []string{"ok", "{{.Reason}}"},
			wantErr: `argument 1 "{{.Reason}}"`,
		},
		{
			name:    "syntax error",
			args:    []string{"{{.Service"},
			wantErr: `argument 0 "{{.Service"`,
		},
		{
			name: "no arguments",
			args: nil,
			want: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := executor.Template(tt.args, target)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Template() error = %v, want it to contain %q", err, tt.wantErr)
				}
				if verr := executor.ValidateTemplate(tt.args); verr == nil {
					t.Errorf("ValidateTemplate() = nil, want an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Template() error = %v", err)
			}
			if strings.Join(got, "\x00") != strings.Join(tt.want, "\x00") || len(got) != len(tt.want) {
				t.Errorf("Template() = %q, want %q", got, tt.want)
			}
			if err := executor.ValidateTemplate(tt.args); err != nil {
				t.Errorf("ValidateTemplate() = %v, want nil", err)
			}
		})
	}
}

func TestIdempotencyKey(t *testing.T) {
	if got, want := executor.IdempotencyKey(12, executor.StepDatabase), "incident-12/rollback.database"; got != want {
		t.Errorf("IdempotencyKey() = %q, want %q", got, want)
	}
}
