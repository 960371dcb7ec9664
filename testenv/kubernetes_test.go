package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog (imported by client-go) flushes its buffers from a
		// goroutine started in its init.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

const rolloutTimeout = 90 * time.Second

func TestKubernetes(t *testing.T) {
	k := StartKubernetes(t)
	ctx := context.Background()

	t.Run("kubectl reports the built server version", func(t *testing.T) {
		var v struct {
			ServerVersion struct {
				GitVersion string `json:"gitVersion"`
			} `json:"serverVersion"`
		}
		out := k.Kubectl(t, "version", "-o", "json")
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("kubectl version output %q: %v", out, err)
		}
		if !strings.HasPrefix(v.ServerVersion.GitVersion, "v1.") {
			t.Fatalf("server gitVersion = %q, want v1.x (version ldflags missing?)", v.ServerVersion.GitVersion)
		}
	})

	t.Run("deployment becomes available with ready pods on fake nodes", func(t *testing.T) {
		createDeployment(t, k.Client, deployment("web", "example.com/web:v1", 2))
		waitRolledOut(t, k.Client, "web", "1")
		pods := podsOf(t, k.Client, "web")
		if len(pods) != 2 {
			t.Fatalf("%d pods, want 2", len(pods))
		}
		for _, p := range pods {
			if !podReady(&p) || p.Status.Phase != corev1.PodRunning {
				t.Errorf("pod %s: phase %s, ready %v; want Running and Ready", p.Name, p.Status.Phase, podReady(&p))
			}
			if !slices.Contains(k.Nodes, p.Spec.NodeName) {
				t.Errorf("pod %s on node %q, want one of %v", p.Name, p.Spec.NodeName, k.Nodes)
			}
		}
	})

	t.Run("set image rolls out revision 2", func(t *testing.T) {
		k.Kubectl(t, "set", "image", "deployment/web", "web=example.com/web:v2")
		waitRolledOut(t, k.Client, "web", "2")
		k.Kubectl(t, "rollout", "status", "deployment/web", "--timeout=60s")
		Eventually(t, rolloutTimeout, func() error {
			pods := podsOf(t, k.Client, "web")
			if len(pods) != 2 {
				return fmt.Errorf("%d pods, want 2 (old ones still terminating?)", len(pods))
			}
			for _, p := range pods {
				if img := p.Spec.Containers[0].Image; img != "example.com/web:v2" || !podReady(&p) {
					return fmt.Errorf("pod %s: image %s, ready %v", p.Name, img, podReady(&p))
				}
			}
			return nil
		}, "only ready v2 pods")
		rss, err := k.Client.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatal(err)
		}
		revisions := map[string]int32{}
		for _, rs := range rss.Items {
			revisions[rs.Annotations["deployment.kubernetes.io/revision"]] = *rs.Spec.Replicas
		}
		if len(revisions) != 2 || revisions["1"] != 0 || revisions["2"] != 2 {
			t.Fatalf("replica sets by revision = %v, want revision 1 scaled to 0 and revision 2 at 2", revisions)
		}
	})

	t.Run("never-ready template ends in ProgressDeadlineExceeded", func(t *testing.T) {
		d := deployment("broken", "example.com/broken:v1", 2)
		deadline := int32(2)
		d.Spec.ProgressDeadlineSeconds = &deadline
		createDeployment(t, k.Client, d)
		waitRolledOut(t, k.Client, "broken", "1")

		// The bad version: its pods are scheduled and run, but never pass
		// readiness.
		cur, err := k.Client.AppsV1().Deployments("default").Get(ctx, "broken", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Spec.Template.Annotations = map[string]string{NeverReadyAnnotation: "true"}
		cur.Spec.Template.Spec.Containers[0].Image = "example.com/broken:v2"
		if _, err := k.Client.AppsV1().Deployments("default").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		Eventually(t, rolloutTimeout, func() error {
			d, err := k.Client.AppsV1().Deployments("default").Get(ctx, "broken", metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range d.Status.Conditions {
				if c.Type == appsv1.DeploymentProgressing {
					if c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded" {
						return nil
					}
					return fmt.Errorf("Progressing=%s (%s)", c.Status, c.Reason)
				}
			}
			return errors.New("no Progressing condition")
		}, "ProgressDeadlineExceeded")

		d, err = k.Client.AppsV1().Deployments("default").Get(ctx, "broken", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Annotations["deployment.kubernetes.io/revision"] != "2" || d.Status.AvailableReplicas != 2 {
			t.Errorf("revision %s, %d available; want revision 2 with the 2 old pods still available",
				d.Annotations["deployment.kubernetes.io/revision"], d.Status.AvailableReplicas)
		}
		var stuck int
		for _, p := range podsOf(t, k.Client, "broken") {
			if p.Spec.Containers[0].Image != "example.com/broken:v2" {
				continue
			}
			stuck++
			if podReady(&p) || p.Spec.NodeName == "" {
				t.Errorf("v2 pod %s: node %q, ready %v; want scheduled and not ready", p.Name, p.Spec.NodeName, podReady(&p))
			}
		}
		if stuck == 0 {
			t.Error("no v2 pod was created")
		}
	})

	t.Run("service account token without permissions is forbidden", func(t *testing.T) {
		cfg := k.ServiceAccountConfig(t, "rbac-test", "nobody")
		sa, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = sa.AppsV1().Deployments("default").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("listing deployments as rbac-test/nobody: err = %v, want Forbidden", err)
		}
		if !strings.Contains(err.Error(), "system:serviceaccount:rbac-test:nobody") {
			t.Errorf("error %q does not name the service account: was the token used?", err)
		}

		// The same token works once RBAC allows it: the Forbidden came
		// from authorization, not from a broken token.
		grantListDeployments(t, k.Client, "default", "rbac-test", "nobody")
		Eventually(t, 30*time.Second, func() error {
			_, err := sa.AppsV1().Deployments("default").List(ctx, metav1.ListOptions{})
			return err
		}, "listing deployments once allowed")
		_, err = sa.AppsV1().Deployments("kube-system").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("listing deployments in kube-system: err = %v, want Forbidden", err)
		}
	})

	t.Run("helm installs a chart and waits for it", func(t *testing.T) {
		dir := t.TempDir()
		k.Helm(t, "create", filepath.Join(dir, "demo"))
		k.Helm(t, "lint", filepath.Join(dir, "demo"))
		k.Helm(t, "install", "demo", filepath.Join(dir, "demo"), "--namespace", "helm-test", "--create-namespace", "--wait", "--timeout", "90s")
		d, err := k.Client.AppsV1().Deployments("helm-test").Get(ctx, "demo", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Status.ReadyReplicas != *d.Spec.Replicas {
			t.Fatalf("helm install --wait returned with %d/%d ready", d.Status.ReadyReplicas, *d.Spec.Replicas)
		}
		if out := k.Helm(t, "status", "demo", "-n", "helm-test"); !strings.Contains(out, "STATUS: deployed") {
			t.Fatalf("helm status:\n%s", out)
		}
	})
}

func TestKubernetesStopKillsEveryProcess(t *testing.T) {
	k := StartKubernetes(t, WithNodes(1), WithoutScheduler())
	procs := k.all()
	names := make([]string, 0, len(procs))
	for _, p := range procs {
		names = append(names, p.name)
	}
	want := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kwok"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("processes %v, want %v", names, want)
	}
	for _, p := range procs {
		if err := syscall.Kill(p.cmd.Process.Pid, 0); err != nil {
			t.Fatalf("%s (pid %d) not running before Stop: %v", p.name, p.cmd.Process.Pid, err)
		}
	}
	k.Stop()
	k.Stop() // a second Stop (and the cleanup's) is a no-op
	for _, p := range procs {
		if err := syscall.Kill(-p.cmd.Process.Pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s: process group %d still has processes after Stop (kill 0: %v)", p.name, p.cmd.Process.Pid, err)
		}
	}
	if logs := k.Logs(); !strings.Contains(logs, "===== kube-apiserver") {
		t.Errorf("Logs() lacks the API server's section:\n%.2000s", logs)
	}
}

func TestKubernetesWithoutSchedulerNeedsNodeName(t *testing.T) {
	k := StartKubernetes(t, WithNodes(1), WithoutScheduler())
	d := deployment("pinned", "example.com/pinned:v1", 1)
	d.Spec.Template.Spec.NodeName = k.Nodes[0]
	createDeployment(t, k.Client, d)
	waitRolledOut(t, k.Client, "pinned", "1")
}

func TestKwokConfig(t *testing.T) {
	upstream, err := KubernetesBinDir()
	if err != nil {
		t.Fatal(err)
	}
	stagesDir := filepath.Join(upstream, "..", "stages")
	fake := t.TempDir()
	for _, name := range kwokStages {
		content := "kind: Stage\nmetadata:\n  name: " + strings.TrimSuffix(name, ".yaml") + "\n"
		if name != "pod-ready.yaml" {
			content += "spec:\n  selector:\n    matchExpressions:\n    - key: x\n"
		}
		if err := os.WriteFile(filepath.Join(fake, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		dir     string
		wantErr string
	}{
		{name: "upstream stages get the never-ready selector", dir: stagesDir},
		{name: "pod-ready without a selector is an error", dir: fake, wantErr: "never-ready selector"},
		{name: "missing directory is an error", dir: filepath.Join(fake, "nope"), wantErr: "reading kwok stage node-initialize.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.dir == stagesDir {
				requireKubernetes(t)
			}
			got, err := kwokConfig(tc.dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(got, "kind: Stage"); n != len(kwokStages) {
				t.Errorf("%d stages, want %d", n, len(kwokStages))
			}
			if !strings.Contains(got, `- key: '.metadata.annotations["`+NeverReadyAnnotation+`"]'`+"\n      operator: 'DoesNotExist'") {
				t.Errorf("never-ready selector missing:\n%s", got)
			}
		})
	}
}

func deployment(name, image string, replicas int32) *appsv1.Deployment {
	podLabels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: podLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image}}},
			},
		},
	}
}

func createDeployment(t *testing.T, c kubernetes.Interface, d *appsv1.Deployment) {
	t.Helper()
	if _, err := c.AppsV1().Deployments(d.Namespace).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment %s: %v", d.Name, err)
	}
}

// waitRolledOut waits until deployment name in "default" is at revision
// and complete: observed, every replica updated and available, none extra.
func waitRolledOut(t *testing.T, c kubernetes.Interface, name, revision string) {
	t.Helper()
	Eventually(t, rolloutTimeout, func() error {
		d, err := c.AppsV1().Deployments("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s, want := d.Status, *d.Spec.Replicas
		if rev := d.Annotations["deployment.kubernetes.io/revision"]; rev != revision {
			return fmt.Errorf("revision %q, want %q", rev, revision)
		}
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != want || s.AvailableReplicas != want || s.Replicas != want {
			return fmt.Errorf("generation %d observed %d; replicas %d updated %d available %d, want %d",
				d.Generation, s.ObservedGeneration, s.Replicas, s.UpdatedReplicas, s.AvailableReplicas, want)
		}
		for _, cond := range s.Conditions {
			if cond.Type == appsv1.DeploymentAvailable && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errors.New("condition Available is not True")
	}, fmt.Sprintf("deployment %s rolled out at revision %s", name, revision))
}

func podsOf(t *testing.T, c kubernetes.Interface, app string) []corev1.Pod {
	t.Helper()
	pods, err := c.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{"app": app}).String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	return live
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func grantListDeployments(t *testing.T, c kubernetes.Interface, namespace, saNamespace, saName string) {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "list-deployments", Namespace: namespace},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"list"}}},
	}
	if _, err := c.RbacV1().Roles(namespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "list-deployments", Namespace: namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "list-deployments"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: saNamespace, Name: saName}},
	}
	if _, err := c.RbacV1().RoleBindings(namespace).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
