package watch

import (
	"bytes"
	"context"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// exposition is the text exposition of reg's guardian_* series, without
// the checkout service's tick durations (its buckets and sum depend on
// how long the ticks took; its count stays).
func exposition(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	timed := regexp.MustCompile(`^guardian_evaluation_duration_seconds_(bucket|sum)\{.*service="checkout"`)
	var out []string
	for line := range strings.Lines(b.String()) {
		if !timed.MatchString(line) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

// The series a service with two triggers exposes through a deploy's watch
// window (values, a query error, a firing trigger), after the window
// closes, and once the service is gone, next to another service's.
func TestExposition(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	// Another service's series, set directly, stay throughout.
	f.m.evalDuration.WithLabelValues("cart").Observe(0.0004)
	f.m.evalDuration.WithLabelValues("cart").Observe(0.003)
	f.m.evalDuration.WithLabelValues("cart").Observe(500)
	f.m.deploys.WithLabelValues("cart", "api").Inc()
	f.m.watching.WithLabelValues("cart").Set(0)
	f.m.queryErrors.WithLabelValues("cart", "timeout").Inc()
	f.m.warnings.WithLabelValues("cart").Inc()
	f.m.versionQueryErr.WithLabelValues("cart").Inc()
	f.m.evaluations.WithLabelValues("cart", "up", "no_data").Inc()
	f.m.triggerState.WithLabelValues("cart", "up").Set(1)
	f.m.triggerValue.WithLabelValues("cart", "up").Set(3)
	// The checkout service's queries through the counting wrapper.
	if _, err := f.m.Querier("checkout", f.src, 0).Query(ctx, latencyV2, t0); err != nil {
		t.Fatal(err)
	}
	f.src.set(func(s *fakeSource) { s.errs[latencyV2] = errDown })
	if _, err := f.m.Querier("checkout", f.src, 0).Query(ctx, latencyV2, t0); err == nil {
		t.Fatal("the failing query did not fail")
	}
	f.src.set(func(s *fakeSource) { delete(s.errs, latencyV2) })

	f.svc.Learn(ctx, "v1", t0)
	if _, err := f.svc.Announce(ctx, "v2", "", tick(1)); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	snap := func(title string) {
		got.WriteString("# --- " + title + "\n")
		got.WriteString(exposition(t, f.reg))
	}
	snap("announced")
	f.src.set(func(s *fakeSource) { s.values[errV1] = 0.01; s.values[errV2] = 0.2; s.values[latencyV2] = 0.9 })
	f.svc.Tick(ctx, tick(2)) // error-rate fires, latency pending
	snap("first evaluation")
	f.src.set(func(s *fakeSource) { delete(s.values, errV2); s.errs[latencyV2] = errDown })
	f.svc.Tick(ctx, tick(3)) // error-rate has no data, latency's query fails
	snap("in the window")
	f.svc.Tick(ctx, tick(1).Add(time.Hour))
	snap("window closed")
	f.m.Retire(f.svc, nil)
	snap("service gone")
	if s := exposition(t, f.reg); strings.Contains(s, `service="checkout"`) {
		t.Errorf("series of the gone service left:\n%s", s)
	}

	const golden = "testdata/exposition.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("exposition differs from %s:\n%s", golden, got.String())
	}
}
