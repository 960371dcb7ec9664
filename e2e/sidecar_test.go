package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/rollback-guardian/guardian/testenv"
)

// configMapDir is a directory laid out as the kubelet lays out a mounted
// ConfigMap: config.yaml -> ..data/config.yaml, ..data -> a timestamped
// directory, swapped atomically on each update.
type configMapDir struct {
	t   *testing.T
	dir string
	n   int
}

func newConfigMapDir(t *testing.T, body string) *configMapDir {
	c := &configMapDir{t: t, dir: filepath.Join(plainTempDir(t), "config")}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c.update(body)
	if err := os.Symlink("..data/config.yaml", filepath.Join(c.dir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *configMapDir) path() string { return filepath.Join(c.dir, "config.yaml") }

// update writes body into a new timestamped directory and swaps ..data to
// it, as the kubelet does when the ConfigMap changes.
func (c *configMapDir) update(body string) {
	c.t.Helper()
	c.n++
	ts := fmt.Sprintf("..2026_12_04_00_00_%02d.%d", c.n, c.n)
	if err := os.Mkdir(filepath.Join(c.dir, ts), 0o700); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, ts, "config.yaml"), []byte(body), 0o600); err != nil {
		c.t.Fatal(err)
	}
	tmp := filepath.Join(c.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, "..data")); err != nil {
		c.t.Fatal(err)
	}
}

// httpGet returns a GET's status and body.
func httpGet(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestSidecarBadConfig runs the real binary as the chart's sidecar does
// (--config.wait-valid, its pod named by the downward API's variables,
// the chart's sidecar RBAC) with a configuration that does not load, in a
// ConfigMap-style directory: Guardian stays up, /-/healthy answers 200
// (what the sidecar's readiness probe asks), /-/ready 503,
// guardian_config_last_reload_successful is 0, each attempt is logged as
// an error and a Warning Event lands on its pod. Fixing the ConfigMap
// brings the same process to ready, with a Normal Event.
func TestSidecarBadConfig(t *testing.T) {
	t.Parallel()
	bin, _ := bins(t)
	k := testenv.StartKubernetes(t, testenv.WithoutScheduler())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The application's pod, and the rules the chart grants the sidecar's
	// ServiceAccount in its namespace.
	const ns, podName, sa = "shop", "checkout-5c7d9", "checkout-guardian"
	if _, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := k.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: podName},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "checkout:v1"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	role := one(t, chartRender(t, "mode: sidecar\n"), "Role", chartRelease+"-local")
	var rules []rbacv1.PolicyRule
	b, err := json.Marshal(dig(role, "rules"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	k.GrantRole(t, ns, sa, rules)
	kubeconfig := k.ServiceAccountKubeconfig(t, ns, sa)

	addr := testenv.FreePort(t)
	url := "http://" + addr
	global := fmt.Sprintf("global:\n  listen_address: %s\n  state_dir: %s\n", addr, filepath.Join(plainTempDir(t), "state"))
	// A valid service, but for the key given.
	service := func(extra string) string {
		return global + "services:\n  - name: checkout\n    scrape: {url: http://127.0.0.1:1/metrics}\n" +
			"    triggers: [{name: errors, query: 'up{version=\"{{.Version}}\"}', below: 1}]\n" + extra
	}
	cm := newConfigMapDir(t, service("    bogus_key: 1\n"))

	logs := &testenv.Buffer{}
	cmd := exec.Command(bin, "run", "--config.file="+cm.path(), "--config.wait-valid", "--log.format=json")
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ns, "POD_NAME="+podName, "POD_UID="+string(pod.UID), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("guardian output:\n%s", logs.String())
		}
	})
	running := func(t *testing.T) {
		t.Helper()
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("guardian exited (%v): it must wait for a valid configuration", err)
		default:
		}
	}

	testenv.WaitHTTP(t, url+"/-/healthy", 30*time.Second)
	running(t)
	if code, body, err := httpGet(url + "/-/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("/-/ready: %d %q %v, want 503", code, body, err)
	}
	if _, body, err := httpGet(url + "/metrics"); err != nil || !strings.Contains(body, "\nguardian_config_last_reload_successful 0\n") {
		t.Errorf("/metrics (%v) does not say guardian_config_last_reload_successful 0:\n%s", err, body)
	}
	errorLines := func() int {
		n := 0
		for _, line := range strings.Split(logs.String(), "\n") {
			var e struct{ Level, Msg, Error string }
			if json.Unmarshal([]byte(line), &e) == nil && e.Level == "error" &&
				strings.HasPrefix(e.Msg, "configuration not loaded: waiting for a valid one") && strings.Contains(e.Error, "bogus_key") {
				n++
			}
		}
		return n
	}
	if n := errorLines(); n != 1 {
		t.Errorf("%d error lines for the first attempt, want 1", n)
	}
	// Another bad version: another attempt, another error line.
	cm.update(service("    bogus_key: 2\n"))
	testenv.EventuallyTrue(t, 30*time.Second, func() bool { return errorLines() == 2 }, "an error line for the second bad version")
	running(t)

	events := func(reason string) []corev1.Event {
		l, err := k.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + podName + ",reason=" + reason})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, e := range events("GuardianConfigInvalid") {
			if e.Type == corev1.EventTypeWarning && e.InvolvedObject.UID == pod.UID && strings.Contains(e.Message, "bogus_key") {
				return nil
			}
		}
		return errors.New("no Warning Event naming bogus_key on the pod")
	}, "a Warning Event on the pod")

	// Fixed: the same process becomes ready.
	cm.update(service(""))
	testenv.WaitHTTP(t, url+"/-/ready", 30*time.Second)
	running(t)
	if _, body, err := httpGet(url + "/metrics"); err != nil || !strings.Contains(body, "\nguardian_config_last_reload_successful 1\n") {
		t.Errorf("/metrics (%v) once fixed does not say guardian_config_last_reload_successful 1", err)
	}
	testenv.EventuallyTrue(t, 30*time.Second, func() bool {
		for _, e := range events("GuardianConfigLoaded") {
			if e.Type == corev1.EventTypeNormal && e.InvolvedObject.UID == pod.UID {
				return true
			}
		}
		return false
	}, "a Normal Event once the configuration loads")

	// Without --config.wait-valid, the same bad configuration stops
	// Guardian with the error, as before.
	cm.update(service("    bogus_key: 3\n"))
	out, err := exec.Command(bin, "run", "--config.file="+cm.path(), "--log.format=json").CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "bogus_key") {
		t.Errorf("guardian run without --config.wait-valid: exit %d, want 1 with the error:\n%s", code, out)
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
