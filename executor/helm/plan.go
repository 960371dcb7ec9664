package helm

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"helm.sh/helm/v3/pkg/release"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/rollback-guardian/guardian/executor"
	"github.com/rollback-guardian/guardian/executor/kubernetes"
)

// Labels Guardian puts on the release record (the storage Secret) of the
// revision its rollback creates. Helm copies a revision's labels into the
// revision that a rollback to it creates, so Guardian sets them on the
// revision it restores just before the rollback and takes them off again
// afterwards: the new revision carries them from the moment it exists.
const (
	// LabelIdempotencyKey holds the rollback step's idempotency key,
	// encoded as a label value (see KeyLabelValue).
	LabelIdempotencyKey = kubernetes.AnnotationIdempotencyKey
	// LabelIncident holds the step's incident number.
	LabelIncident = kubernetes.AnnotationIncident
	// LabelFrom holds the revision rolled back from; the rollback's own
	// revision is the next one.
	LabelFrom = kubernetes.AnnotationFrom
	// LabelTo holds the revision whose chart and values were restored.
	LabelTo = kubernetes.AnnotationTo
)

// hashedKeyPrefix starts a key label value that is a hash of the key.
const hashedKeyPrefix = "sha256-"

// KeyLabelValue encodes an idempotency key as a label value: the key with
// "/" replaced by "_" ("incident-12_rollback.application") when that is a
// valid label value and the key has no "_" (so that no two keys share a
// value), otherwise "sha256-" and the first 40 hex digits of its SHA-256.
func KeyLabelValue(key string) string {
	v := strings.ReplaceAll(key, "/", "_")
	if key != "" && !strings.Contains(key, "_") && !strings.HasPrefix(key, hashedKeyPrefix) &&
		len(validation.IsValidLabelValue(v)) == 0 {
		return v
	}
	sum := sha256.Sum256([]byte(key))
	return hashedKeyPrefix + hex.EncodeToString(sum[:])[:40]
}

// step is what a plan does.
type step int

const (
	// stepRollback rolls the release back.
	stepRollback step = iota
	// stepDone: this rollback step's revision is the current one and
	// deployed; only its resources are checked.
	stepDone
	// stepAwait: this rollback step's revision is the current one and
	// still pending; it is awaited, never started again.
	stepAwait
	// stepNone: the release already has what the step would restore,
	// without the step's key (someone else's rollback, or a deploy of the
	// baseline); only the resources are checked.
	stepNone
)

// String names the step for logs.
func (s step) String() string {
	switch s {
	case stepRollback:
		return "rollback"
	case stepDone:
		return "done"
	case stepAwait:
		return "await"
	case stepNone:
		return "none"
	}
	return "unknown"
}

// selection says which revision a rollback restores.
type selection struct {
	toRevision      int
	matchAppVersion bool
}

// plan is what a rollback does.
type plan struct {
	step step
	// cur is the newest revision.
	cur *release.Release
	// to is the revision to restore (stepRollback), or nil.
	to *release.Release
	// from and toRevision are the revisions rolled back from and to, as
	// far as known (0: not known); newRevision is the rollback's own
	// revision, when there is one.
	from, toRevision, newRevision int
	// why says why no rollback is needed (stepDone, stepNone).
	why string
}

// planRollback decides what rolling the release with this history back
// for t does. In order:
//
//  1. A revision carries t's idempotency key: this step already rolled
//     back. If that revision is the newest and deployed, only its
//     resources are checked; if it is still pending-rollback, it is
//     awaited; if it failed, or newer revisions came since, the step fails
//     rather than roll back again.
//  2. The newest revision is pending (another install, upgrade or
//     rollback in progress) or uninstalled: fail, never start a second
//     operation.
//  3. The newest revision is a deployed rollback ("Rollback to N") to
//     the revision that this plan would restore had it not happened, with
//     that revision's chart, values and manifest: the rollback is already
//     done (by someone else, or by an earlier run of this step that
//     stopped before its key was recorded); only the resources are
//     checked. Not when its appVersion is the incident's Version.
//  4. The revision to restore: Config.ToRevision; else, with
//     MatchAppVersion, the newest deployed revision whose chart appVersion
//     is t.Baseline (refusing when the current appVersion is neither
//     t.Version nor t.Baseline, and doing nothing when it is t.Baseline);
//     else the newest deployed revision before the current one. When that
//     revision's chart, values and manifest are the current ones, nothing
//     is rolled back.
//
// The errors are messages for an ErrFailed error.
func planRollback(history []*release.Release, sel selection, t executor.Target) (plan, error) {
	var h []*release.Release
	for _, r := range history {
		if r != nil && r.Info != nil {
			h = append(h, r)
		}
	}
	if len(h) == 0 {
		return plan{}, errors.New("the release has no revisions")
	}
	slices.SortFunc(h, func(a, b *release.Release) int { return a.Version - b.Version })
	cur := h[len(h)-1]
	key := KeyLabelValue(t.IdempotencyKey)

	// 1. This step's own revision.
	for i := len(h) - 1; i >= 0; i-- {
		from, ok := ownRevision(h[i], key)
		if !ok {
			continue
		}
		own := h[i]
		to, _ := strconv.Atoi(own.Labels[LabelTo])
		done := fmt.Sprintf("%s already rolled it back from revision %d to revision %d as revision %d", t.IdempotencyKey, from, to, own.Version)
		if own != cur {
			return plan{}, fmt.Errorf("%s, but revision %d (%s, %s: %s) came since; not rolling back again",
				done, cur.Version, describe(cur), cur.Info.Status, cur.Info.Description)
		}
		p := plan{cur: cur, from: from, toRevision: to, newRevision: own.Version}
		switch st := own.Info.Status; st {
		case release.StatusDeployed:
			p.step, p.why = stepDone, done
		case release.StatusPendingRollback:
			p.step, p.why = stepAwait, done+", still pending"
		case release.StatusFailed:
			return plan{}, fmt.Errorf("%s, which failed (%s); not rolling back again", done, own.Info.Description)
		default:
			return plan{}, fmt.Errorf("%s, which is now %s (%s); not rolling back again", done, st, own.Info.Description)
		}
		return p, nil
	}

	// 2. Another operation.
	switch st := cur.Info.Status; {
	case st.IsPending() || st == release.StatusUninstalling:
		return plan{}, fmt.Errorf("another operation is in progress: revision %d is %s (%s); not starting a rollback",
			cur.Version, st, cur.Info.Description)
	case st == release.StatusUninstalled:
		return plan{}, fmt.Errorf("it is uninstalled (revision %d); nothing to roll back", cur.Version)
	}

	// 3. A rollback already there, without the key.
	if n, ok := rollbackTo(cur); ok && len(h) > 1 && cur.Info.Status == release.StatusDeployed &&
		(t.Version == "" || appVersion(cur) != t.Version) {
		if before, err := chooseTarget(h[:len(h)-1], sel, t); err == nil && before.to != nil &&
			before.to.Version == n && sameContent(before.to, cur) {
			return plan{
				step: stepNone, cur: cur, from: h[len(h)-2].Version, toRevision: n, newRevision: cur.Version,
				why: fmt.Sprintf("already rolled back from revision %d to revision %d as revision %d (%q, not by %s)",
					h[len(h)-2].Version, n, cur.Version, cur.Info.Description, t.IdempotencyKey),
			}, nil
		}
	}

	// 4. The revision to restore.
	c, err := chooseTarget(h, sel, t)
	if err != nil {
		return plan{}, err
	}
	if c.skip != "" {
		return plan{step: stepNone, cur: cur, toRevision: cur.Version, why: c.skip}, nil
	}
	return plan{step: stepRollback, cur: cur, to: c.to, from: cur.Version, toRevision: c.to.Version, newRevision: cur.Version + 1}, nil
}

// choice is the revision to restore, or why there is nothing to restore.
type choice struct {
	to   *release.Release
	skip string
}

// chooseTarget picks the revision to restore from the newest revision of
// h (ascending by version).
func chooseTarget(h []*release.Release, sel selection, t executor.Target) (choice, error) {
	cur := h[len(h)-1]
	var to *release.Release
	switch {
	case sel.toRevision > 0:
		for _, r := range h {
			if r.Version == sel.toRevision {
				to = r
			}
		}
		if to == nil {
			return choice{}, fmt.Errorf("revision %d not found (revisions: %s)", sel.toRevision, revisions(h))
		}
		if to == cur {
			return choice{skip: fmt.Sprintf("revision %d is the current one already", to.Version)}, nil
		}
	case sel.matchAppVersion:
		if t.Baseline == "" {
			return choice{}, errors.New("the target has no baseline version to match the charts' appVersion against")
		}
		app := appVersion(cur)
		if app == t.Baseline {
			return choice{skip: fmt.Sprintf("revision %d runs the baseline, app version %q", cur.Version, app)}, nil
		}
		if t.Version != "" && app != t.Version {
			return choice{}, fmt.Errorf("revision %d runs app version %q, neither the incident's %q nor the baseline %q; not rolling back",
				cur.Version, app, t.Version, t.Baseline)
		}
		for i := len(h) - 2; i >= 0; i-- {
			if deployedOnce(h[i]) && appVersion(h[i]) == t.Baseline {
				to = h[i]
				break
			}
		}
		if to == nil {
			return choice{}, fmt.Errorf("no earlier deployed revision has app version %q (revisions: %s)", t.Baseline, revisions(h))
		}
	default:
		for i := len(h) - 2; i >= 0; i-- {
			if deployedOnce(h[i]) {
				to = h[i]
				break
			}
		}
		if to == nil {
			return choice{}, fmt.Errorf("no earlier deployed revision to roll back to (revisions: %s)", revisions(h))
		}
	}
	if sameContent(to, cur) {
		return choice{skip: fmt.Sprintf("revision %d has the chart and values of revision %d already", cur.Version, to.Version)}, nil
	}
	return choice{to: to}, nil
}

// ownRevision reports whether r is the revision that a rollback with this
// key label value created, and the revision it rolled back from. A
// revision that merely carries the labels (the restored revision while the
// rollback runs, or a later rollback's copy of the labels) is not: the
// rollback's revision is the one after the revision it rolled back from.
func ownRevision(r *release.Release, key string) (from int, ok bool) {
	if r.Labels[LabelIdempotencyKey] != key {
		return 0, false
	}
	from, err := strconv.Atoi(r.Labels[LabelFrom])
	if err != nil || r.Version != from+1 {
		return 0, false
	}
	return from, true
}

// rollbackTo returns N of a revision that Helm's rollback created
// (description "Rollback to N").
func rollbackTo(r *release.Release) (int, bool) {
	rest, ok := strings.CutPrefix(r.Info.Description, "Rollback to ")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil
}

// deployedOnce reports whether a revision was deployed: it is deployed or
// was superseded (failed and pending revisions were not).
func deployedOnce(r *release.Release) bool {
	return r.Info.Status == release.StatusDeployed || r.Info.Status == release.StatusSuperseded
}

// sameContent reports whether two revisions have the same chart (name,
// version and appVersion), values and manifest: what a rollback copies.
func sameContent(a, b *release.Release) bool {
	if chartName(a) != chartName(b) || appVersion(a) != appVersion(b) || a.Manifest != b.Manifest {
		return false
	}
	if len(a.Config) == 0 && len(b.Config) == 0 {
		return true
	}
	return reflect.DeepEqual(a.Config, b.Config)
}

// appVersion is a revision's chart appVersion.
func appVersion(r *release.Release) string {
	if r.Chart == nil || r.Chart.Metadata == nil {
		return ""
	}
	return r.Chart.Metadata.AppVersion
}

// chartName is a revision's chart as "name-version".
func chartName(r *release.Release) string {
	if r.Chart == nil || r.Chart.Metadata == nil {
		return "no chart"
	}
	return r.Chart.Metadata.Name + "-" + r.Chart.Metadata.Version
}

// describe says which chart and app a revision has: "chart demo-0.1.0,
// app v1".
func describe(r *release.Release) string {
	s := "chart " + chartName(r)
	if v := appVersion(r); v != "" {
		s += ", app " + v
	}
	return s
}

// revisions lists a history for messages: "1 superseded (demo-0.1.0, v1),
// 2 deployed (demo-0.2.0, v2)".
func revisions(h []*release.Release) string {
	out := make([]string, len(h))
	for i, r := range h {
		out[i] = fmt.Sprintf("%d %s (%s, %s)", r.Version, r.Info.Status, chartName(r), appVersion(r))
	}
	return strings.Join(out, ", ")
}

// withLabels returns a copy of labels with t's labels set, recording a
// rollback from revision from to revision to.
func withLabels(labels map[string]string, t executor.Target, from, to int) map[string]string {
	out := maps.Clone(labels)
	if out == nil {
		out = map[string]string{}
	}
	out[LabelIdempotencyKey] = KeyLabelValue(t.IdempotencyKey)
	out[LabelIncident] = strconv.FormatInt(t.Incident, 10)
	out[LabelFrom] = strconv.Itoa(from)
	out[LabelTo] = strconv.Itoa(to)
	return out
}
