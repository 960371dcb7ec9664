package config

import "testing"

func TestShellScript(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want int
	}{
		{[]string{"sh", "-c", "echo {{.Version}}"}, 2},
		{[]string{"/bin/bash", "-euc", "x", "arg0"}, 2},
		{[]string{"bash", "-e", "-c", "x"}, 3},
		{[]string{"env", "sh", "-c", "x"}, 3},
		{[]string{"bash", "-o", "pipefail", "-c", "x"}, 4},
		{[]string{"/usr/bin/env", "bash", "-c", "x"}, 3},
		{[]string{"busybox", "sh", "-c", "x"}, 3},
		{[]string{"sh", "./rollback.sh", "{{.Version}}"}, -1},
		{[]string{"sh", "--", "-c"}, -1},
		{[]string{"sh", "-c"}, -1},
		{[]string{"./rollback.sh", "-c", "{{.Version}}"}, -1},
		{[]string{"busybox", "wget", "-c", "x"}, -1},
		{nil, -1},
	} {
		if got := ShellScript(tc.argv); got != tc.want {
			t.Errorf("ShellScript(%q) = %d, want %d", tc.argv, got, tc.want)
		}
	}
}
