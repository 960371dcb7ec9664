package helm

import (
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"go.yaml.in/yaml/v3"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/resource"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/kubernetes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ns = "shop"

var target = executor.Target{
	Incident: 7, Service: "checkout", Version: "v2", Baseline: "v1",
	Step: executor.StepApplication, IdempotencyKey: "incident-7/rollback.application",
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		mod        func(*Config)
		want       []string
	}{
		{name: "minimal", yaml: "release: checkout"},
		{name: "everything", yaml: "kubeconfig: /k\ncontext: prod\nnamespace: shop\nrelease: checkout.web\nto_revision: 3\nwait: false\ntimeout: 5m\ncleanup_on_fail: true\nmax_history: 0"},
		{name: "match app version", yaml: "release: checkout\nmatch_app_version: true"},
		{name: "no release", yaml: "namespace: shop", want: []string{"release: missing"}},
		{name: "bad release name", yaml: "release: Check_out", want: []string{`release: invalid Helm release name "Check_out": want at most 53 lowercase letters`}},
		{name: "release name too long", yaml: "release: " + strings.Repeat("a", 54), want: []string{"release: invalid Helm release name"}},
		{name: "bad namespace", yaml: "namespace: Shop\nrelease: checkout", want: []string{"namespace: a lowercase RFC 1123 label"}},
		{name: "negative revision", yaml: "release: checkout\nto_revision: -1", want: []string{"to_revision: must be positive (0: the previous deployed revision), got -1"}},
		{name: "revision and app version", yaml: "release: checkout\nto_revision: 2\nmatch_app_version: true", want: []string{"match_app_version: conflicts with to_revision (want at most one)"}},
		{name: "negative history", yaml: "release: checkout\nmax_history: -1", want: []string{"max_history: must be positive (0: no limit), got -1"}},
		{name: "negative timeout", yaml: "release: checkout", mod: func(c *Config) { c.Timeout = model.Duration(-time.Second) }, want: []string{"timeout: must be positive, got -1s"}},
		{name: "every problem", yaml: "namespace: Shop\nto_revision: -2\nmax_history: -3", want: []string{"namespace:", "release: missing", "to_revision:", "max_history:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			dec := yaml.NewDecoder(strings.NewReader(tc.yaml))
			dec.KnownFields(true)
			if err := dec.Decode(&c); err != nil {
				t.Fatal(err)
			}
			if tc.mod != nil {
				tc.mod(&c)
			}
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if c.Timeout == 0 || c.Wait == nil || c.MaxHistory == nil {
					t.Errorf("defaults not applied: %+v", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tc.want) {
				t.Errorf("%d problems, want %d: %v", n, len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

// TestReleaseNamesAsHelm checks that Config.Validate, whose release-name
// check lives in package config without the Helm SDK, accepts exactly the
// names chartutil.ValidateReleaseName accepts.
func TestReleaseNamesAsHelm(t *testing.T) {
	names := []string{"a", "-", ".", "a..b", "a-.b", "checkout.eu", "Checkout", "check_out", "shöp", "check out"}
	for _, n := range []int{52, 53, 54, 63, 64} {
		names = append(names, strings.Repeat("a", n), strings.Repeat("a", n-1)+"-", "a."+strings.Repeat("b", n-2))
	}
	const alphabet = "aZ09-._ "
	for i := range 20000 {
		var b strings.Builder
		for x := i; x > 0; x /= len(alphabet) + 1 {
			if d := x % (len(alphabet) + 1); d > 0 {
				b.WriteByte(alphabet[d-1])
			}
		}
		names = append(names, b.String())
	}
	for _, name := range names {
		if name == "" {
			continue // "missing", not a name check
		}
		c := Config{Release: name}
		err := c.Validate()
		got := err != nil && strings.Contains(err.Error(), "release: invalid Helm release name")
		if want := chartutil.ValidateReleaseName(name) != nil; got != want {
			t.Errorf("release %q: rejected %v, Helm rejects it: %v (%v)", name, got, want, err)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	if err := yaml.Unmarshal([]byte("release: checkout\nmax_history: 0\nwait: false"), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if *c.MaxHistory != 0 || c.Waits() || time.Duration(c.Timeout) != DefaultTimeout {
		t.Errorf("explicit max_history 0 and wait false, default timeout: got %d, %v, %s", *c.MaxHistory, c.Waits(), c.Timeout)
	}
	c = Config{Release: "checkout"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if *c.MaxHistory != DefaultMaxHistory || !c.Waits() {
		t.Errorf("defaults: max_history %d, wait %v", *c.MaxHistory, c.Waits())
	}
}

func TestKeyLabelValue(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"incident-12/rollback.application", "incident-12_rollback.application"},
		{"incident-12/rollback.database", "incident-12_rollback.database"},
		// Not valid label values as they are, or ambiguous: hashed.
		{"incident-12_rollback.application", "sha256-"},
		{"a key with spaces", "sha256-"},
		{strings.Repeat("k", 64), "sha256-"},
		{"sha256-0123", "sha256-"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			got := KeyLabelValue(tc.key)
			if !strings.HasPrefix(got, tc.want) || (tc.want == hashedKeyPrefix) != (len(got) == len(hashedKeyPrefix)+40) {
				t.Errorf("KeyLabelValue(%q) = %q, want %q…", tc.key, got, tc.want)
			}
		})
	}
	if KeyLabelValue("a/b") == KeyLabelValue("a_b") {
		t.Error(`"a/b" and "a_b" share a label value`)
	}
}

// rev is a revision of release "checkout": chart demo-0.N.0 with app
// version app, values and manifest that follow app.
func rev(version int, status release.Status, app, desc string, labels map[string]string) *release.Release {
	chartVersion := map[string]string{"v1": "0.1.0", "v2": "0.2.0", "v3": "0.3.0"}[app]
	if chartVersion == "" {
		chartVersion = "0.9.0"
	}
	return &release.Release{
		Name: "checkout", Namespace: ns, Version: version,
		Info:     &release.Info{Status: status, Description: desc},
		Chart:    &chart.Chart{Metadata: &chart.Metadata{APIVersion: "v2", Name: "demo", Version: chartVersion, AppVersion: app}},
		Config:   map[string]any{"tag": app},
		Manifest: "---\n# demo " + app + "\n",
		Labels:   labels,
	}
}

// ownLabels are the labels of target's rollback from revision from to
// revision to.
func ownLabels(from, to string) map[string]string {
	return map[string]string{
		LabelIdempotencyKey: KeyLabelValue(target.IdempotencyKey), LabelIncident: "7", LabelFrom: from, LabelTo: to,
	}
}

const (
	deployed   = release.StatusDeployed
	superseded = release.StatusSuperseded
	failed     = release.StatusFailed
)

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history []*release.Release
		sel     selection
		target  *executor.Target
		// want is the step and "from to new" revisions, or wantErr the
		// error's message.
		want           step
		from, to, newR int
		why            string
		wantErr        string
	}{
		{
			name:    "previous revision",
			history: []*release.Release{rev(2, deployed, "v2", "Upgrade complete", nil), rev(1, superseded, "v1", "Install complete", nil)},
			want:    stepRollback, from: 2, to: 1, newR: 3,
		},
		{
			name: "previous deployed revision, skipping a failed one",
			history: []*release.Release{
				rev(1, superseded, "v1", "Install complete", nil), rev(2, failed, "v2", "Upgrade failed", nil), rev(3, deployed, "v3", "Upgrade complete", nil),
			},
			want: stepRollback, from: 3, to: 1, newR: 4,
		},
		{
			name: "to_revision",
			history: []*release.Release{
				rev(1, superseded, "v1", "Install complete", nil), rev(2, superseded, "v2", "Upgrade complete", nil), rev(3, deployed, "v3", "Upgrade complete", nil),
			},
			sel:  selection{toRevision: 1},
			want: stepRollback, from: 3, to: 1, newR: 4,
		},
		{
			name:    "to_revision not found",
			history: []*release.Release{rev(1, superseded, "v1", "", nil), rev(2, deployed, "v2", "", nil)},
			sel:     selection{toRevision: 7},
			wantErr: "revision 7 not found (revisions: 1 superseded (demo-0.1.0, v1), 2 deployed (demo-0.2.0, v2))",
		},
		{
			name:    "to_revision is the current one",
			history: []*release.Release{rev(1, superseded, "v1", "", nil), rev(2, deployed, "v2", "", nil)},
			sel:     selection{toRevision: 2},
			want:    stepNone, to: 2, why: "revision 2 is the current one already",
		},
		{
			name: "app version match",
			history: []*release.Release{
				rev(1, superseded, "v1", "Install complete", nil), rev(2, superseded, "v3", "Upgrade complete", nil), rev(3, deployed, "v2", "Upgrade complete", nil),
			},
			sel:  selection{matchAppVersion: true},
			want: stepRollback, from: 3, to: 1, newR: 4,
		},
		{
			name:    "app version match: already on the baseline",
			history: []*release.Release{rev(1, superseded, "v2", "", nil), rev(2, deployed, "v1", "Upgrade complete", nil)},
			sel:     selection{matchAppVersion: true},
			want:    stepNone, to: 2, why: `revision 2 runs the baseline, app version "v1"`,
		},
		{
			name:    "app version match: neither version nor baseline",
			history: []*release.Release{rev(1, superseded, "v1", "", nil), rev(2, deployed, "v3", "", nil)},
			sel:     selection{matchAppVersion: true},
			wantErr: `revision 2 runs app version "v3", neither the incident's "v2" nor the baseline "v1"; not rolling back`,
		},
		{
			name:    "app version match: no revision of the baseline",
			history: []*release.Release{rev(1, superseded, "v3", "", nil), rev(2, failed, "v1", "", nil), rev(3, deployed, "v2", "", nil)},
			sel:     selection{matchAppVersion: true},
			wantErr: `no earlier deployed revision has app version "v1" (revisions: 1 superseded (demo-0.3.0, v3), 2 failed (demo-0.1.0, v1), 3 deployed (demo-0.2.0, v2))`,
		},
		{
			name:    "app version match: no baseline",
			history: []*release.Release{rev(1, superseded, "v1", "", nil), rev(2, deployed, "v2", "", nil)},
			sel:     selection{matchAppVersion: true},
			target:  &executor.Target{IdempotencyKey: target.IdempotencyKey, Version: "v2"},
			wantErr: "the target has no baseline version to match the charts' appVersion against",
		},
		{
			name: "already done by this key",
			history: []*release.Release{
				rev(1, superseded, "v1", "Install complete", nil), rev(2, superseded, "v2", "Upgrade complete", nil),
				rev(3, deployed, "v1", "Rollback to 1", ownLabels("2", "1")),
			},
			want: stepDone, from: 2, to: 1, newR: 3,
			why: "incident-7/rollback.application already rolled it back from revision 2 to revision 1 as revision 3",
		},
		{
			name: "already done by this key, to_revision configured",
			history: []*release.Release{
				rev(1, superseded, "v1", "", nil), rev(2, superseded, "v2", "", nil), rev(3, deployed, "v1", "Rollback to 1", ownLabels("2", "1")),
			},
			sel:  selection{toRevision: 2},
			want: stepDone, from: 2, to: 1, newR: 3,
		},
		{
			name: "this key's rollback still pending",
			history: []*release.Release{
				rev(1, superseded, "v1", "", nil), rev(2, deployed, "v2", "", nil),
				rev(3, release.StatusPendingRollback, "v1", "Rollback to 1", ownLabels("2", "1")),
			},
			want: stepAwait, from: 2, to: 1, newR: 3,
		},
		{
			name: "this key's rollback failed",
			history: []*release.Release{
				rev(1, superseded, "v1", "", nil), rev(2, deployed, "v2", "", nil),
				rev(3, failed, "v1", "Rollback to 1 failed: resources not ready", ownLabels("2", "1")),
			},
			wantErr: "incident-7/rollback.application already rolled it back from revision 2 to revision 1 as revision 3, which failed (Rollback to 1 failed: resources not ready); not rolling back again",
		},
		{
			name: "a deploy after this key's rollback",
			history: []*release.Release{
				rev(1, superseded, "v1", "", nil), rev(2, superseded, "v2", "", nil),
				rev(3, superseded, "v1", "Rollback to 1", ownLabels("2", "1")), rev(4, deployed, "v3", "Upgrade complete", nil),
			},
			wantErr: "incident-7/rollback.application already rolled it back from revision 2 to revision 1 as revision 3, but revision 4 (chart demo-0.3.0, app v3, deployed: Upgrade complete) came since; not rolling back again",
		},
		{
			name: "a later rollback that copied this key's labels is not this key's",
			history: []*release.Release{
				rev(1, superseded, "v1", "", nil), rev(2, superseded, "v2", "", nil),
				rev(3, superseded, "v1", "Rollback to 1", ownLabels("2", "1")), rev(4, superseded, "v3", "Upgrade complete", nil),
				rev(5, deployed, "v1", "Rollback to 3", ownLabels("2", "1")),
			},
			wantErr: "as revision 3, but revision 5 (chart demo-0.1.0, app v1, deployed: Rollback to 3) came since",
		},
		{
			name: "labels left on the restored revision by a crash are not a rollback",
			history: []*release.Release{
				rev(1, superseded, "v1", "Install complete", ownLabels("2", "1")), rev(2, deployed, "v2", "Upgrade complete", nil),
			},
			want: stepRollback, from: 2, to: 1, newR: 3,
		},
		{
			name: "rolled back already without the key (crash before it was recorded, or someone else)",
			history: []*release.Release{
				rev(1, superseded, "v1", "Install complete", nil), rev(2, superseded, "v2", "Upgrade complete", nil),
				rev(3, deployed, "v1", "Rollback to 1", nil),
			},
			want: stepNone, from: 2, to: 1, newR: 3,
			why: `already rolled back from revision 2 to revision 1 as revision 3 ("Rollback to 1", not by incident-7/rollback.application)`,
		},
		{
			name: "a rollback that redeployed the incident's version is rolled back",
			history: []*release.Release{
				rev(1, superseded, "v1", "", nil), rev(2, superseded, "v2", "", nil), rev(3, superseded, "v1", "Rollback to 1", nil),
				rev(4, deployed, "v2", "Rollback to 2", nil),
			},
			want: stepRollback, from: 4, to: 3, newR: 5,
		},
		{
			name:    "another operation in progress",
			history: []*release.Release{rev(1, deployed, "v1", "", nil), rev(2, release.StatusPendingUpgrade, "v2", "Preparing upgrade", nil)},
			wantErr: "another operation is in progress: revision 2 is pending-upgrade (Preparing upgrade); not starting a rollback",
		},
		{
			name:    "someone else's rollback in progress",
			history: []*release.Release{rev(1, superseded, "v1", "", nil), rev(2, superseded, "v2", "", nil), rev(3, release.StatusPendingRollback, "v1", "Rollback to 1", nil)},
			wantErr: "another operation is in progress: revision 3 is pending-rollback (Rollback to 1)",
		},
		{
			name:    "nothing to roll back to",
			history: []*release.Release{rev(1, deployed, "v2", "Install complete", nil)},
			wantErr: "no earlier deployed revision to roll back to (revisions: 1 deployed (demo-0.2.0, v2))",
		},
		{
			name:    "the previous revision is the same",
			history: []*release.Release{rev(1, superseded, "v1", "", nil), rev(2, deployed, "v1", "Upgrade complete", nil)},
			want:    stepNone, to: 2, why: "revision 2 has the chart and values of revision 1 already",
		},
		{
			name:    "uninstalled",
			history: []*release.Release{rev(1, superseded, "v1", "", nil), rev(2, release.StatusUninstalled, "v2", "", nil)},
			wantErr: "it is uninstalled (revision 2); nothing to roll back",
		},
		{
			name:    "no history",
			wantErr: "the release has no revisions",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := target
			if tc.target != nil {
				tg = *tc.target
			}
			p, err := planRollback(tc.history, tc.sel, tg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("plan = %+v, %v; want error %q", p, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.step != tc.want || p.from != tc.from || p.toRevision != tc.to || p.newRevision != tc.newR {
				t.Errorf("plan %s from %d to %d new %d, want %s from %d to %d new %d (%s)",
					p.step, p.from, p.toRevision, p.newRevision, tc.want, tc.from, tc.to, tc.newR, p.why)
			}
			if tc.want == stepRollback && (p.to == nil || p.to.Version != tc.to) {
				t.Errorf("plan restores %v, want revision %d", p.to, tc.to)
			}
			if !strings.Contains(p.why, tc.why) {
				t.Errorf("why = %q, want %q", p.why, tc.why)
			}
		})
	}
}

// fixture is an executor over Helm's memory storage and a fake Kubernetes
// client.
type fixture struct {
	e     *Executor
	store *storage.Storage
	kube  *kubefake.FailingKubeClient
}

func newFixture(t *testing.T, cfg Config, client *fake.Clientset, history ...*release.Release) *fixture {
	t.Helper()
	store := storage.Init(driver.NewMemory())
	for _, r := range history {
		if err := store.Create(r); err != nil {
			t.Fatal(err)
		}
	}
	kc := &kubefake.FailingKubeClient{PrintingKubeClient: kubefake.PrintingKubeClient{Out: io.Discard, LogOutput: io.Discard}}
	ac := &action.Configuration{Releases: store, KubeClient: kc, Capabilities: chartutil.DefaultCapabilities, Log: t.Logf}
	if client == nil {
		client = fake.NewClientset()
	}
	cfg.Release, cfg.Connection.Namespace = "checkout", ns
	e, err := New(cfg, zaptest.NewLogger(t), WithActionConfig(ac, client), WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{e: e, store: store, kube: kc}
}

func (f *fixture) get(t *testing.T, version int) *release.Release {
	t.Helper()
	r, err := f.store.Get("checkout", version)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fixture) history(t *testing.T) []*release.Release {
	t.Helper()
	h, err := f.store.History("checkout")
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestRollback(t *testing.T) {
	f := newFixture(t, Config{}, nil,
		rev(1, superseded, "v1", "Install complete", map[string]string{"team": "shop"}), rev(2, deployed, "v2", "Upgrade complete", nil))
	res, err := f.e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Output)
	}
	t.Logf("output: %s", res.Output)
	want := "helm release shop/checkout: revision 2 (chart demo-0.2.0, app v2) → revision 1 (chart demo-0.1.0, app v1): rolled back as revision 3; 0 resources ready in "
	if !strings.HasPrefix(res.Output, want) {
		t.Errorf("Output = %q, want %q…", res.Output, want)
	}
	for k, v := range map[string]string{
		"from_revision": "2", "to_revision": "1", "new_revision": "3", "chart": "demo-0.1.0", "app_version": "v1", "rolled_back": "true",
	} {
		if res.Details[k] != v {
			t.Errorf("Details[%s] = %q, want %q (%v)", k, res.Details[k], v, res.Details)
		}
	}
	if res.Details["duration"] == "" {
		t.Error("no duration")
	}
	r3 := f.get(t, 3)
	if r3.Info.Status != deployed || r3.Info.Description != "Rollback to 1" || appVersion(r3) != "v1" {
		t.Errorf("revision 3: %s %q app %s", r3.Info.Status, r3.Info.Description, appVersion(r3))
	}
	wantLabels := ownLabels("2", "1")
	wantLabels["team"] = "shop"
	if !maps.Equal(r3.Labels, wantLabels) {
		t.Errorf("revision 3 labels %v, want %v", r3.Labels, wantLabels)
	}
	if r1 := f.get(t, 1); !maps.Equal(r1.Labels, map[string]string{"team": "shop"}) {
		t.Errorf("the restored revision keeps labels %v, want its own back", r1.Labels)
	}
	if r2 := f.get(t, 2); r2.Info.Status != superseded {
		t.Errorf("revision 2 is %s, want superseded", r2.Info.Status)
	}

	// Again, as after a crash before the incident recorded the result:
	// nothing more is rolled back.
	res, err = f.e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, res.Output)
	}
	if !strings.Contains(res.Output, "incident-7/rollback.application already rolled it back from revision 2 to revision 1 as revision 3 (chart demo-0.1.0, app v1), no rollback") ||
		res.Details["rolled_back"] != "false" || res.Details["new_revision"] != "3" {
		t.Errorf("second run: %q %v", res.Output, res.Details)
	}
	if n := len(f.history(t)); n != 3 {
		t.Errorf("%d revisions after the second run, want 3", n)
	}

	// Another incident's step does not undo the rollback either.
	other := target
	other.Incident, other.IdempotencyKey = 8, executor.IdempotencyKey(8, executor.StepApplication)
	res, err = f.e.Rollback(context.Background(), other)
	if err != nil || !strings.Contains(res.Output, "already rolled back from revision 2 to revision 1 as revision 3") || len(f.history(t)) != 3 {
		t.Errorf("another key: %v, %q, %d revisions", err, res.Output, len(f.history(t)))
	}
}

func TestRollbackMaxHistory(t *testing.T) {
	f := newFixture(t, Config{MaxHistory: new(2)}, nil,
		rev(1, superseded, "v1", "", nil), rev(2, superseded, "v2", "", nil), rev(3, deployed, "v3", "", nil))
	res, err := f.e.Rollback(context.Background(), target)
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Output)
	}
	var versions []int
	for _, r := range f.history(t) {
		versions = append(versions, r.Version)
	}
	if len(versions) != 2 {
		t.Errorf("revisions %v kept, want 2 (max_history)", versions)
	}
	if r := f.get(t, 4); appVersion(r) != "v2" || r.Info.Status != deployed {
		t.Errorf("revision 4: %s %s", appVersion(r), r.Info.Status)
	}
}

func TestRollbackHelmFails(t *testing.T) {
	f := newFixture(t, Config{}, nil, rev(1, superseded, "v1", "", nil), rev(2, deployed, "v2", "", nil))
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	f.kube.UpdateError = apierrors.NewForbidden(gr, "checkout", errors.New(`User "system:serviceaccount:shop:guardian" cannot patch resource "deployments" in API group "apps" in the namespace "shop"`))
	res, err := f.e.Rollback(context.Background(), target)
	if !errors.Is(err, executor.ErrFailed) || errors.Is(err, executor.ErrTimeout) {
		t.Fatalf("err = %v, want ErrFailed only", err)
	}
	for _, w := range []string{"rolling back to revision 1: permission denied", `cannot patch resource "deployments" in API group "apps"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if !strings.Contains(res.Output, "→ revision 1 (chart demo-0.1.0, app v1): rollback failed") {
		t.Errorf("Output = %q", res.Output)
	}
	r3 := f.get(t, 3)
	if r3.Info.Status != failed {
		t.Errorf("revision 3 is %s, want failed", r3.Info.Status)
	}

	// Again: the failed rollback is this step's; it is not tried twice.
	f.kube.UpdateError = nil
	_, err = f.e.Rollback(context.Background(), target)
	if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), "as revision 3, which failed") {
		t.Errorf("second run: %v", err)
	}
	if n := len(f.history(t)); n != 3 {
		t.Errorf("%d revisions, want 3", n)
	}
}

func TestRollbackRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history []*release.Release
		key     string
		want    string
	}{
		{name: "no release", want: "release not found (no revisions stored in namespace shop)"},
		{name: "no key", history: []*release.Release{rev(1, deployed, "v1", "", nil)}, key: "-", want: "target has no idempotency key"},
		{
			name:    "pending upgrade",
			history: []*release.Release{rev(1, superseded, "v1", "", nil), rev(2, release.StatusPendingUpgrade, "v2", "Preparing upgrade", nil)},
			want:    "another operation is in progress: revision 2 is pending-upgrade",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{}, nil, tc.history...)
			tg := target
			if tc.key == "-" {
				tg.IdempotencyKey = ""
			}
			_, err := f.e.Rollback(context.Background(), tg)
			if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrFailed with %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "helm release shop/checkout: rollback failed: ") {
				t.Errorf("error does not name the release: %v", err)
			}
			if n := len(tc.history); n > 0 && len(f.history(t)) != n {
				t.Errorf("revisions changed: %d, want %d", len(f.history(t)), n)
			}
		})
	}
}

// flippingDriver is a storage driver whose pending revision 3 is read as
// pending once, then as what Helm settled it to.
type flippingDriver struct {
	driver.Driver
	settle release.Status
	reads  int
}

func (d *flippingDriver) Get(key string) (*release.Release, error) {
	r, err := d.Driver.Get(key)
	if err == nil && r.Version == 3 && r.Info.Status.IsPending() {
		if d.reads++; d.reads > 1 {
			r.Info.Status = d.settle
		}
	}
	return r, err
}

func TestRollbackAwaitsOwnPending(t *testing.T) {
	pending := func() []*release.Release {
		return []*release.Release{
			rev(1, superseded, "v1", "", nil), rev(2, deployed, "v2", "", nil),
			rev(3, release.StatusPendingRollback, "v1", "Rollback to 1", ownLabels("2", "1")),
		}
	}
	t.Run("settles deployed", func(t *testing.T) {
		f := newFixture(t, Config{}, nil, pending()...)
		f.store.Driver = &flippingDriver{Driver: f.store.Driver, settle: deployed}
		res, err := f.e.Rollback(context.Background(), target)
		if err != nil {
			t.Fatalf("%v\n%s", err, res.Output)
		}
		if !strings.Contains(res.Output, "as revision 3, still pending; awaited; 0 resources ready") {
			t.Errorf("Output = %q", res.Output)
		}
		if n := len(f.history(t)); n != 3 {
			t.Errorf("%d revisions, want 3: nothing started", n)
		}
	})
	t.Run("settles failed", func(t *testing.T) {
		f := newFixture(t, Config{}, nil, pending()...)
		f.store.Driver = &flippingDriver{Driver: f.store.Driver, settle: failed}
		_, err := f.e.Rollback(context.Background(), target)
		if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), "revision 3, this step's rollback, ended failed") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("stays pending", func(t *testing.T) {
		f := newFixture(t, Config{Timeout: model.Duration(100 * time.Millisecond)}, nil, pending()...)
		_, err := f.e.Rollback(context.Background(), target)
		if !errors.Is(err, executor.ErrTimeout) || errors.Is(err, executor.ErrFailed) ||
			!strings.Contains(err.Error(), "revision 3 is still pending-rollback") {
			t.Errorf("err = %v, want ErrTimeout naming the pending revision", err)
		}
		if n := len(f.history(t)); n != 3 {
			t.Errorf("%d revisions, want 3: nothing started", n)
		}
	})
	t.Run("caller gives up", func(t *testing.T) {
		f := newFixture(t, Config{}, nil, pending()...)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := f.e.Rollback(ctx, target)
		if !errors.Is(err, context.Canceled) || errors.Is(err, executor.ErrFailed) || errors.Is(err, executor.ErrTimeout) {
			t.Errorf("err = %v, want context.Canceled only", err)
		}
	})
}

// deploymentInfo is the resource a fake KubeClient builds from any
// manifest: Deployment shop/checkout.
func deploymentInfo() *resource.Info {
	gvk := appsv1.SchemeGroupVersion.WithKind("Deployment")
	return &resource.Info{
		Name: "checkout", Namespace: ns,
		Mapping: &meta.RESTMapping{GroupVersionKind: gvk, Resource: appsv1.SchemeGroupVersion.WithResource("deployments"), Scope: meta.RESTScopeNamespace},
		Object:  &appsv1.Deployment{TypeMeta: metav1.TypeMeta{Kind: "Deployment", APIVersion: "apps/v1"}, ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: ns}},
	}
}

// cluster is a fake cluster with Deployment shop/checkout and its current
// ReplicaSet, ready pods of which there are readyReplicas.
func cluster(readyReplicas int32) *fake.Clientset {
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "checkout"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "demo:v1"}}},
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: ns, UID: types.UID("d-uid"), Generation: 2},
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "checkout"}}, Template: tmpl,
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2},
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: "checkout-1", Namespace: ns, Labels: map[string]string{"app": "checkout"},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
		},
		Spec:   appsv1.ReplicaSetSpec{Replicas: new(int32(1)), Selector: d.Spec.Selector, Template: tmpl},
		Status: appsv1.ReplicaSetStatus{Replicas: 1, ReadyReplicas: readyReplicas, AvailableReplicas: readyReplicas},
	}
	return fake.NewClientset(d, rs)
}

func TestRollbackWaitsForResources(t *testing.T) {
	history := func() []*release.Release {
		return []*release.Release{rev(1, superseded, "v1", "", nil), rev(2, deployed, "v2", "", nil)}
	}
	t.Run("ready", func(t *testing.T) {
		f := newFixture(t, Config{}, cluster(1), history()...)
		f.kube.DummyResources = []*resource.Info{deploymentInfo()}
		res, err := f.e.Rollback(context.Background(), target)
		if err != nil {
			t.Fatalf("%v\n%s", err, res.Output)
		}
		if !strings.Contains(res.Output, "rolled back as revision 3; 1 resources ready in ") {
			t.Errorf("Output = %q", res.Output)
		}
	})
	t.Run("never ready", func(t *testing.T) {
		f := newFixture(t, Config{Timeout: model.Duration(200 * time.Millisecond)}, cluster(0), history()...)
		f.kube.DummyResources = []*resource.Info{deploymentInfo()}
		res, err := f.e.Rollback(context.Background(), target)
		if !errors.Is(err, executor.ErrFailed) || errors.Is(err, executor.ErrTimeout) {
			t.Fatalf("err = %v, want ErrFailed only", err)
		}
		want := "resources not ready after 200ms: Deployment is not ready: shop/checkout. 0 out of 1 expected pods are ready; revision 3 marked failed"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
		if !strings.Contains(res.Output, "rolled back as revision 3; resources not ready after ") {
			t.Errorf("Output = %q", res.Output)
		}
		r3 := f.get(t, 3)
		if r3.Info.Status != failed || !strings.HasPrefix(r3.Info.Description, "Rollback to 1 failed: resources not ready") {
			t.Errorf("revision 3: %s %q", r3.Info.Status, r3.Info.Description)
		}
	})
	t.Run("no wait", func(t *testing.T) {
		f := newFixture(t, Config{Wait: new(false)}, cluster(0), history()...)
		f.kube.DummyResources = []*resource.Info{deploymentInfo()}
		res, err := f.e.Rollback(context.Background(), target)
		if err != nil || !strings.Contains(res.Output, "not waiting for its resources (wait: false)") {
			t.Errorf("%v, %q", err, res.Output)
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		client := cluster(1)
		client.PrependReactor("get", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "checkout",
				errors.New(`User "guardian" cannot get resource "deployments" in API group "apps" in the namespace "shop"`))
		})
		f := newFixture(t, Config{}, client, history()...)
		f.kube.DummyResources = []*resource.Info{deploymentInfo()}
		_, err := f.e.Rollback(context.Background(), target)
		if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), `permission denied (grant it as the helm executor's RBAC rules say): Deployment shop/checkout: deployments.apps "checkout" is forbidden: User "guardian" cannot get resource "deployments"`) {
			t.Errorf("err = %v", err)
		}
	})
}

// TestNewDoesNotConnect: New only builds clients; the first request is the
// rollback's, and an unreachable API server fails it.
func TestNewDoesNotConnect(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: shop}}]
current-context: x
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Connection: kubernetes.Connection{Kubeconfig: kubeconfig}, Release: "checkout"}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if e.String() != "helm release shop/checkout" {
		t.Errorf("String() = %q, want the kubeconfig context's namespace", e.String())
	}
	_, err = e.Rollback(context.Background(), target)
	if !errors.Is(err, executor.ErrFailed) || !strings.Contains(err.Error(), "helm release shop/checkout: rollback failed: reading the release history: ") ||
		!strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("err = %v, want ErrFailed reading the history from 127.0.0.1:1", err)
	}
	if _, err := New(Config{Connection: kubernetes.Connection{Kubeconfig: filepath.Join(t.TempDir(), "missing")}, Release: "checkout"}, nil); err == nil ||
		!strings.HasPrefix(err.Error(), "helm executor: kubeconfig ") {
		t.Errorf("New with a missing kubeconfig: %v", err)
	}
	if _, err := New(Config{}, nil); err == nil || err.Error() != "helm executor: release: missing" {
		t.Errorf("New with no release: %v", err)
	}
}
