package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/rollback-guardian/guardian/executor"
)

// switchBack sets the blue-green Service's selector label to the previous
// value, unless it has it already, and waits until the Service's ready
// endpoints are all pods of the new selector.
func (e *Executor) switchBack(ctx context.Context, log *zap.Logger, t executor.Target, res *executor.Result) error {
	start := e.now()
	bg := e.cfg.BlueGreen
	label := bg.SelectorLabel
	value, err := previousValue(bg, t)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", e, executor.ErrFailed, err)
	}
	var (
		from, skip string
		selector   map[string]string
	)
	for attempt := 1; ; attempt++ {
		svc, err := e.client.CoreV1().Services(e.namespace).Get(ctx, e.name, metav1.GetOptions{})
		if err != nil {
			return e.apiError(ctx, "reading the service", err)
		}
		cur, ok := svc.Spec.Selector[label]
		if !ok {
			return fmt.Errorf("%s: %w: its selector %s has no label %s", e, executor.ErrFailed, labels.Set(svc.Spec.Selector), label)
		}
		from, selector = cur, svc.Spec.Selector
		if svc.Annotations[AnnotationIdempotencyKey] == t.IdempotencyKey {
			if to := svc.Annotations[AnnotationTo]; cur != to {
				return fmt.Errorf("%s: %w: %s already switched it to %s=%s, but it is %s=%s now; not switching again",
					e, executor.ErrFailed, t.IdempotencyKey, label, to, label, cur)
			}
			from = svc.Annotations[AnnotationFrom]
			skip = fmt.Sprintf("already switched by %s", t.IdempotencyKey)
			break
		}
		if cur == value {
			skip = "already selects " + label + "=" + value
			break
		}
		patch, err := json.Marshal(map[string]any{
			"metadata": map[string]any{"resourceVersion": svc.ResourceVersion, "annotations": marks(t, cur, value, "")},
			"spec":     map[string]any{"selector": map[string]string{label: value}},
		})
		if err != nil {
			return fmt.Errorf("%s: %w: %w", e, executor.ErrFailed, err)
		}
		log.Info("switching service selector", zap.String("label", label), zap.String("from", cur), zap.String("to", value))
		patched, err := e.client.CoreV1().Services(e.namespace).Patch(ctx, e.name, types.MergePatchType, patch, metav1.PatchOptions{})
		if err == nil {
			selector = patched.Spec.Selector
			break
		}
		if apierrors.IsConflict(err) && attempt < maxConflicts {
			log.Info("service changed while switching, trying again", zap.Error(err))
			continue
		}
		return e.apiError(ctx, "patching the selector", err)
	}
	if skip != "" {
		log.Info("no patch needed", zap.String("reason", skip))
	}

	d := res.Details
	d["selector_label"] = label
	d["from"] = from
	d["to"] = value
	d["patched"] = strconv.FormatBool(skip == "")
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", e)
	if skip != "" {
		fmt.Fprintf(&b, "%s, no patch", skip)
	} else {
		fmt.Fprintf(&b, "selector %s=%s → %s", label, from, value)
	}

	sel := labels.SelectorFromSet(selector)
	p, err := e.wait(ctx, log, func(ctx context.Context) (progress, error) { return e.endpoints(ctx, sel) })
	took := e.now().Sub(start)
	d["duration"] = seconds(took)
	if err != nil {
		fmt.Fprintf(&b, "; endpoints not ready after %s", seconds(took))
		res.Output = b.String()
		return err
	}
	d["ready_endpoints"] = strconv.Itoa(int(p.ready))
	fmt.Fprintf(&b, "; %d/%d pods ready behind it in %s", p.ready, p.want, seconds(took))
	res.Output = b.String()
	return nil
}

// endpoints compares the Service's ready endpoints with the pods sel
// selects: done when at least one is ready and every ready one is such a
// pod.
func (e *Executor) endpoints(ctx context.Context, sel labels.Selector) (progress, error) {
	pods, err := e.client.CoreV1().Pods(e.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return progress{}, fmt.Errorf("listing pods: %w", err)
	}
	selected := make(map[string]bool, len(pods.Items))
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			selected[p.Name] = true
		}
	}
	eps, err := e.client.DiscoveryV1().EndpointSlices(e.namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{discoveryv1.LabelServiceName: e.name}.String(),
	})
	if err != nil {
		return progress{}, fmt.Errorf("listing endpoint slices: %w", err)
	}
	readyNew, readyOld := map[string]bool{}, map[string]bool{}
	for _, s := range eps.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			name := strings.Join(ep.Addresses, ",")
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				name = ep.TargetRef.Name
			}
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && selected[name] {
				readyNew[name] = true
			} else {
				readyOld[name] = true
			}
		}
	}
	p := progress{ready: int32(len(readyNew)), want: int32(len(selected))}
	switch {
	case len(selected) == 0:
		p.msg = fmt.Sprintf("no pod matches %s", sel)
	case len(readyOld) > 0:
		p.msg = fmt.Sprintf("%d ready endpoints of other pods left (%s); %d of %d selected pods ready", len(readyOld), firstNames(readyOld), len(readyNew), len(selected))
	case len(readyNew) == 0:
		p.msg = fmt.Sprintf("none of %d selected pods is a ready endpoint", len(selected))
	default:
		p.done = true
		p.msg = fmt.Sprintf("%d of %d selected pods are ready endpoints", len(readyNew), len(selected))
	}
	return p, nil
}

// firstNames lists up to three names of set, sorted.
func firstNames(set map[string]bool) string {
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) > 3 {
		names = append(names[:3], "...")
	}
	return strings.Join(names, ", ")
}

// previousValue is the selector label's value to switch back to.
func previousValue(bg *BlueGreen, t executor.Target) (string, error) {
	var v, from string
	switch {
	case bg.Previous != "":
		return bg.Previous, nil
	case bg.Values != nil:
		var ok bool
		if v, ok = bg.Values[t.Baseline]; !ok {
			return "", fmt.Errorf("blue_green.values has no entry for the baseline %q", t.Baseline)
		}
		return v, nil
	case bg.ValueTemplate != "":
		out, err := executor.Template([]string{bg.ValueTemplate}, t)
		if err != nil {
			return "", fmt.Errorf("blue_green.value_template: %w", err)
		}
		v, from = out[0], "blue_green.value_template"
	default:
		v, from = t.Baseline, "the baseline version"
	}
	if v == "" {
		return "", fmt.Errorf("%s gives an empty selector value", from)
	}
	if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
		return "", fmt.Errorf("%s gives %q, not a label value: %s", from, v, strings.Join(msgs, "; "))
	}
	return v, nil
}
