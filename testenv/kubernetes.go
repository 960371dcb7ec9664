package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubernetesBinDirEnv names the environment variable that, when set, says
// where the control plane's binaries are (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kwok, kubectl, helm), with the
// kwok stage files in ../stages. Without it they are looked up in the
// checkout's .cache/k8s/current, where scripts/k8s.sh builds them.
const KubernetesBinDirEnv = "GUARDIAN_K8S_BIN_DIR"

// NeverReadyAnnotation is the pod annotation that keeps a pod from ever
// becoming ready under kwok: put it (any value) on a pod template to get a
// rollout that never completes and ends in ProgressDeadlineExceeded.
const NeverReadyAnnotation = "testenv.guardian.io/never-ready"

// ServiceClusterIPRange is the API server's Service IP range.
const ServiceClusterIPRange = "10.96.0.0/24"

// kubernetesBinaries are the programs StartKubernetes needs; kubectl and helm
// are there for the tests that drive the cluster like a user.
var kubernetesBinaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl", "helm"}

// kwokStages are the kwok stage files scripts/k8s.sh copies from kwok's
// module, in the order they are given to kwok.
var kwokStages = []string{"node-initialize.yaml", "node-heartbeat-with-lease.yaml", "pod-ready.yaml", "pod-complete.yaml", "pod-delete.yaml"}

// Kubernetes is a real Kubernetes control plane on loopback ports: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, and kwok faking
// the nodes and the kubelets (pods on them become Running and Ready unless
// they carry NeverReadyAnnotation). Nothing runs in containers.
type Kubernetes struct {
	// Server is the API server's URL (https://127.0.0.1:PORT).
	Server string
	// Kubeconfig is the path of an admin kubeconfig (system:masters).
	Kubeconfig string
	// Token is the admin bearer token.
	Token string
	// CAData is the PEM certificate that the API server serves with.
	CAData []byte
	// Config is the admin client configuration.
	Config *rest.Config
	// Client is an admin clientset.
	Client kubernetes.Interface
	// Nodes are the names of the fake (kwok) nodes, all Ready.
	Nodes []string
	// BinDir is the directory of the binaries, kubectl and helm included.
	BinDir string

	t       testing.TB
	dir     string
	mu      sync.Mutex
	procs   []*kubeProcess // running
	stopped []*kubeProcess // stopped, kept for their logs
}

type kubeOptions struct {
	nodes         int
	scheduler     bool
	apiserverArgs []string
}

// KubernetesOption changes how StartKubernetes builds the cluster.
type KubernetesOption func(*kubeOptions)

// WithNodes sets how many fake nodes kwok manages (default 2).
func WithNodes(n int) KubernetesOption {
	return func(o *kubeOptions) { o.nodes = n }
}

// WithoutScheduler starts no kube-scheduler: pods then stay unscheduled
// unless they name their node (spec.nodeName).
func WithoutScheduler() KubernetesOption {
	return func(o *kubeOptions) { o.scheduler = false }
}

// WithAPIServerArgs adds flags to kube-apiserver (e.g. feature gates).
func WithAPIServerArgs(args ...string) KubernetesOption {
	return func(o *kubeOptions) { o.apiserverArgs = append(o.apiserverArgs, args...) }
}

// KubernetesBinDir returns the directory of the control plane's binaries:
// $GUARDIAN_K8S_BIN_DIR, or .cache/k8s/current/bin in the checkout that
// contains the working directory.
func KubernetesBinDir() (string, error) {
	if d := os.Getenv(KubernetesBinDirEnv); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the checkout: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "scripts", "k8s.sh")); err == nil {
			return filepath.Join(d, ".cache", "k8s", "current", "bin"), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no scripts/k8s.sh above %s: set %s", wd, KubernetesBinDirEnv)
		}
	}
}

// requireKubernetes returns the bin directory, skipping the test when a
// binary is missing, or failing it when CI is set.
func requireKubernetes(t testing.TB) string {
	t.Helper()
	dir, err := KubernetesBinDir()
	var missing []string
	if err == nil {
		for _, b := range kubernetesBinaries {
			if fi, serr := os.Stat(filepath.Join(dir, b)); serr != nil || fi.Mode()&0o111 == 0 {
				missing = append(missing, b)
			}
		}
		for _, s := range kwokStages {
			if _, serr := os.Stat(filepath.Join(dir, "..", "stages", s)); serr != nil {
				missing = append(missing, "stages/"+s)
			}
		}
		if len(missing) > 0 {
			err = fmt.Errorf("missing in %s: %s", dir, strings.Join(missing, ", "))
		}
	}
	if err == nil {
		return dir
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("the Kubernetes test control plane is required in CI but not built (scripts/k8s.sh builds it; make test runs it): %v", err)
	}
	t.Skipf("Kubernetes test control plane not built (run scripts/k8s.sh, or make test): %v", err)
	return ""
}

// errPortInUse says that a component could not bind the loopback port it
// was given (another process took it after FreePort): start again.
var errPortInUse = errors.New("port already in use")

// StartKubernetes starts a fresh control plane for t and waits until it
// serves: /readyz answers ok, the fake nodes are Ready and the "default"
// ServiceAccount exists in namespace "default". Every process is killed at
// t's cleanup (or by Stop); their output is printed if t failed. A missing
// binary skips t, or fails it when CI is set. Start-up takes a few seconds.
func StartKubernetes(t testing.TB, opts ...KubernetesOption) *Kubernetes {
	t.Helper()
	o := kubeOptions{nodes: 2, scheduler: true}
	for _, opt := range opts {
		opt(&o)
	}
	bin := requireKubernetes(t)
	base := t.TempDir()
	var k *Kubernetes
	t.Cleanup(func() {
		k.Stop()
		if t.Failed() {
			t.Logf("kubernetes control plane output (tails):\n%s", k.logTails(8<<10))
		}
	})
	for attempt := 1; ; attempt++ {
		k = &Kubernetes{t: t, dir: filepath.Join(base, fmt.Sprint(attempt)), BinDir: bin}
		err := k.start(o)
		if err == nil {
			return k
		}
		k.Stop()
		if errors.Is(err, errPortInUse) && attempt < 3 {
			t.Logf("starting Kubernetes again: %v", err)
			continue
		}
		t.Fatalf("starting Kubernetes: %v", err)
	}
}

func (k *Kubernetes) path(name string) string { return filepath.Join(k.dir, name) }

func (k *Kubernetes) start(o kubeOptions) error {
	k.t.Helper()
	begin := time.Now()
	if err := os.MkdirAll(k.dir, 0o700); err != nil {
		return err
	}

	// Credentials: an admin token, a serving certificate for 127.0.0.1 and
	// the service-account signing key pair.
	token, err := randomHex(24)
	if err != nil {
		return err
	}
	k.Token = token
	certPEM, keyPEM, err := selfSignedServing()
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	k.CAData = certPEM
	saPub, saKey, err := serviceAccountKeys()
	if err != nil {
		return fmt.Errorf("service-account keys: %w", err)
	}
	for name, content := range map[string][]byte{
		"tokens.csv":  fmt.Appendf(nil, "%s,admin,admin-uid,\"system:masters\"\n", k.Token),
		"serving.crt": certPEM,
		"serving.key": keyPEM,
		"sa.pub":      saPub,
		"sa.key":      saKey,
	} {
		if err := os.WriteFile(k.path(name), content, 0o600); err != nil {
			return err
		}
	}
	ports, err := freePorts(5)
	if err != nil {
		return err
	}
	etcdClient, etcdPeer, apiAddr, kcmAddr, schedulerAddr := ports[0], ports[1], ports[2], ports[3], ports[4]

	// etcd.
	err = k.spawn("etcd", nil,
		"--name=default",
		"--data-dir="+k.path("etcd"),
		"--listen-client-urls=http://"+etcdClient,
		"--advertise-client-urls=http://"+etcdClient,
		"--listen-peer-urls=http://"+etcdPeer,
		"--initial-advertise-peer-urls=http://"+etcdPeer,
		"--initial-cluster=default=http://"+etcdPeer,
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	if err != nil {
		return err
	}

	// kube-apiserver.
	k.Server = "https://" + apiAddr
	args := []string{
		"--etcd-servers=http://" + etcdClient,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + portOf(apiAddr),
		"--cert-dir=" + k.path("apiserver-certs"),
		"--tls-cert-file=" + k.path("serving.crt"),
		"--tls-private-key-file=" + k.path("serving.key"),
		"--token-auth-file=" + k.path("tokens.csv"),
		"--authorization-mode=RBAC",
		"--anonymous-auth=false",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + k.path("sa.pub"),
		"--service-account-signing-key-file=" + k.path("sa.key"),
		"--service-cluster-ip-range=" + ServiceClusterIPRange,
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
		"--enable-priority-and-fairness=false",
	}
	if err := k.spawn("kube-apiserver", nil, append(args, o.apiserverArgs...)...); err != nil {
		return err
	}

	k.Config = &rest.Config{
		Host:            k.Server,
		BearerToken:     k.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: k.CAData},
		QPS:             100,
		Burst:           200,
	}
	client, err := kubernetes.NewForConfig(k.Config)
	if err != nil {
		return fmt.Errorf("kubernetes client for %s: %w", k.Server, err)
	}
	k.Client = client
	k.Kubeconfig = k.path("admin.kubeconfig")
	if err := writeKubeconfig(k.Kubeconfig, k.Server, k.CAData, "admin", k.Token); err != nil {
		return err
	}
	if err := k.waitFor(60*time.Second, "kube-apiserver /readyz", k.readyz); err != nil {
		return err
	}
	apiReady := time.Since(begin)

	// The controllers, the scheduler and the fake kubelets.
	err = k.spawn("kube-controller-manager", nil,
		"--kubeconfig="+k.Kubeconfig,
		"--authentication-kubeconfig="+k.Kubeconfig,
		"--authorization-kubeconfig="+k.Kubeconfig,
		"--leader-elect=false",
		"--controllers=*",
		"--service-account-private-key-file="+k.path("sa.key"),
		"--root-ca-file="+k.path("serving.crt"),
		"--bind-address=127.0.0.1",
		"--secure-port="+portOf(kcmAddr),
		"--cert-dir="+k.path("kcm-certs"),
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	if o.scheduler {
		err = k.spawn("kube-scheduler", nil,
			"--kubeconfig="+k.Kubeconfig,
			"--authentication-kubeconfig="+k.Kubeconfig,
			"--authorization-kubeconfig="+k.Kubeconfig,
			"--leader-elect=false",
			"--bind-address=127.0.0.1",
			"--secure-port="+portOf(schedulerAddr),
			"--cert-dir="+k.path("scheduler-certs"),
			"--profiling=false",
		)
		if err != nil {
			return err
		}
	}
	stages, err := kwokConfig(filepath.Join(k.BinDir, "..", "stages"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(k.path("kwok.yaml"), []byte(stages), 0o600); err != nil {
		return err
	}
	kwokHome := k.path("kwok-home")
	if err := os.MkdirAll(kwokHome, 0o700); err != nil {
		return err
	}
	// HOME keeps a developer's ~/.kwok/kwok.yaml out of the test.
	err = k.spawn("kwok", []string{"HOME=" + kwokHome},
		"--kubeconfig="+k.Kubeconfig,
		"--config="+k.path("kwok.yaml"),
		"--manage-all-nodes=true",
	)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range o.nodes {
		name := fmt.Sprintf("kwok-node-%d", i)
		if _, err := k.Client.CoreV1().Nodes().Create(ctx, fakeNode(name), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", name, err)
		}
		k.Nodes = append(k.Nodes, name)
	}
	err = k.waitFor(60*time.Second, "fake nodes Ready", func() error {
		for _, n := range k.Nodes {
			node, err := k.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !nodeReady(node) {
				return fmt.Errorf("node %s not Ready", n)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = k.waitFor(60*time.Second, `ServiceAccount "default" in namespace "default"`, func() error {
		_, err := k.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		return err
	}
	k.t.Logf("kubernetes control plane at %s ready in %s (API server %s; %d nodes)", k.Server,
		time.Since(begin).Round(time.Millisecond), apiReady.Round(time.Millisecond), len(k.Nodes))
	return nil
}

// readyz asks the API server's /readyz.
func (k *Kubernetes) readyz() error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(k.CAData)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, k.Server+"/readyz", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+k.Token)
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return nil
}

// waitFor polls f until it returns nil. It gives up at timeout, or as soon
// as one of the processes has exited (with errPortInUse if that process
// could not bind its port).
func (k *Kubernetes) waitFor(timeout time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if p := k.exited(); p != nil {
			logs := tail(p.logPath, 8<<10)
			if strings.Contains(logs, "address already in use") {
				return fmt.Errorf("waiting for %s: %s exited: %w", what, p.name, errPortInUse)
			}
			return fmt.Errorf("waiting for %s: %s exited (%v):\n%s", what, p.name, p.err, logs)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s: %w", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ServiceAccountConfig returns a client configuration that authenticates
// as ServiceAccount namespace/name with a one-hour token from the
// TokenRequest API, creating the ServiceAccount (and its namespace) if
// needed. Use it to check what RBAC allows that account.
func (k *Kubernetes) ServiceAccountConfig(t testing.TB, namespace, name string) *rest.Config {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", namespace, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	_, err = k.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating service account %s/%s: %v", namespace, name, err)
	}
	expiry := int64(3600)
	tr, err := k.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token for service account %s/%s: %v", namespace, name, err)
	}
	return &rest.Config{
		Host:            k.Server,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: k.CAData},
		QPS:             100,
		Burst:           200,
	}
}

// ServiceAccountKubeconfig is ServiceAccountConfig written as a kubeconfig
// file, for processes (guardian, kubectl, helm) that should act as that
// ServiceAccount. It returns the file's path.
func (k *Kubernetes) ServiceAccountKubeconfig(t testing.TB, namespace, name string) string {
	t.Helper()
	cfg := k.ServiceAccountConfig(t, namespace, name)
	p := filepath.Join(t.TempDir(), namespace+"-"+name+".kubeconfig")
	if err := writeKubeconfig(p, k.Server, k.CAData, "system:serviceaccount:"+namespace+":"+name, cfg.BearerToken); err != nil {
		t.Fatal(err)
	}
	return p
}

// Command returns a command for one of the built binaries (usually
// "kubectl" or "helm") with KUBECONFIG set to the admin kubeconfig and helm's
// cache, config and data directories inside the test's temporary directory.
func (k *Kubernetes) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(k.BinDir, name), args...)
	helm := filepath.Join(k.dir, "helm")
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+k.Kubeconfig,
		"HELM_CACHE_HOME="+filepath.Join(helm, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helm, "config"),
		"HELM_DATA_HOME="+filepath.Join(helm, "data"),
	)
	return cmd
}

// Kubectl runs the built kubectl as admin and returns its standard output,
// failing the test (with stderr) if it fails.
func (k *Kubernetes) Kubectl(t testing.TB, args ...string) string {
	t.Helper()
	return k.run(t, "kubectl", args...)
}

// Helm runs the built helm CLI against the cluster as admin and returns
// its standard output, failing the test (with stderr) if it fails.
func (k *Kubernetes) Helm(t testing.TB, args ...string) string {
	t.Helper()
	return k.run(t, "helm", args...)
}

func (k *Kubernetes) run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := k.Command(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// Stop kills every process of the control plane (SIGTERM, then SIGKILL to
// its process group after 5 s) and waits for them. It is safe to call more
// than once; cleanup calls it too.
func (k *Kubernetes) Stop() {
	k.mu.Lock()
	procs := k.procs
	k.procs = nil
	k.mu.Unlock()
	// Dependants first: kwok and the controllers, then the API server, then etcd.
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(5 * time.Second)
	}
	k.mu.Lock()
	k.stopped = append(k.stopped, procs...)
	k.mu.Unlock()
}

// Logs returns everything the control plane's processes printed so far,
// each under a header with its name.
func (k *Kubernetes) Logs() string {
	return k.logTails(-1)
}

func (k *Kubernetes) all() []*kubeProcess {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append(append([]*kubeProcess(nil), k.stopped...), k.procs...)
}

func (k *Kubernetes) logTails(n int) string {
	var b strings.Builder
	for _, p := range k.all() {
		fmt.Fprintf(&b, "===== %s (pid %d) =====\n%s\n", p.name, p.cmd.Process.Pid, tail(p.logPath, n))
	}
	return b.String()
}

func (k *Kubernetes) exited() *kubeProcess {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range k.procs {
		select {
		case <-p.done:
			return p
		default:
		}
	}
	return nil
}

// kubeProcess is one running component.
type kubeProcess struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // valid once done is closed
}

// spawn starts binary name from BinDir with its output in a log file. The
// process gets its own process group (so that Stop can kill whatever it
// started) and SIGKILL when the test process dies (Pdeathsig).
func (k *Kubernetes) spawn(name string, env []string, args ...string) error {
	logPath := k.path(name + ".log")
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(filepath.Join(k.BinDir, name), args...)
	cmd.Dir = k.dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &kubeProcess{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	k.mu.Lock()
	k.procs = append(k.procs, p)
	k.mu.Unlock()
	return nil
}

func (p *kubeProcess) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	// Whatever is left in the group (the process itself after the grace
	// period, or anything it started) is killed.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

// kwokConfig joins the stage files into one kwok configuration, adding to
// pod-ready a selector that skips pods carrying NeverReadyAnnotation.
func kwokConfig(dir string) (string, error) {
	const anchor = "  selector:\n    matchExpressions:\n"
	var b strings.Builder
	for _, name := range kwokStages {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("reading kwok stage %s: %w", name, err)
		}
		s := string(data)
		if name == "pod-ready.yaml" {
			if strings.Count(s, anchor) != 1 {
				return "", fmt.Errorf("kwok stage %s: no single %q to add the never-ready selector to", name, anchor)
			}
			s = strings.Replace(s, anchor, anchor+
				"    - key: '.metadata.annotations[\""+NeverReadyAnnotation+"\"]'\n"+
				"      operator: 'DoesNotExist'\n", 1)
		}
		b.WriteString("---\n")
		b.WriteString(s)
		if !strings.HasSuffix(s, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String(), nil
}

func fakeNode(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("32"),
				corev1.ResourceMemory: resource.MustParse("256Gi"),
				corev1.ResourcePods:   resource.MustParse("110"),
			},
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("32"),
				corev1.ResourceMemory: resource.MustParse("256Gi"),
				corev1.ResourcePods:   resource.MustParse("110"),
			},
		},
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func writeKubeconfig(path, server string, ca []byte, user, token string) error {
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"testenv": {Server: server, CertificateAuthorityData: ca}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{user: {Token: token}},
		Contexts:       map[string]*clientcmdapi.Context{"testenv": {Cluster: "testenv", AuthInfo: user, Namespace: "default"}},
		CurrentContext: "testenv",
	}
	if err := clientcmd.WriteToFile(cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// selfSignedServing makes the API server's certificate: self-signed, valid
// for 127.0.0.1, localhost and the in-cluster names.
func selfSignedServing() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "kube-apiserver (testenv)"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)},
		DNSNames:              []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// serviceAccountKeys makes the RSA key pair that signs ServiceAccount tokens.
func serviceAccountKeys() (pubPEM, keyPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// freePorts returns n distinct free loopback addresses, holding every
// listener open until all are chosen so that none is handed out twice.
func freePorts(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// tail returns the last n bytes of the file at path (all of it if n < 0).
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "(no output)"
		}
		return fmt.Sprintf("(reading %s: %v)", path, err)
	}
	if n >= 0 && len(data) > n {
		return "...\n" + string(data[len(data)-n:])
	}
	return string(data)
}
