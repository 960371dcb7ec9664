package chart

import (
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func sample() Chart {
	th := 0.05
	var v, b []Point
	for i := range 60 {
		at := t0.Add(time.Duration(i) * time.Second)
		bad := 0.004
		if i >= 20 && i < 40 {
			bad = 0.08
		}
		if i == 30 {
			bad = math.NaN()
		}
		v = append(v, Point{at, bad})
		b = append(b, Point{at, 0.004})
	}
	return Chart{
		Title: "error-rate <v2> & baseline", Unit: UnitRatio, Threshold: &th,
		Series: []Series{{Name: "v2", Role: RoleVersion, Points: v}, {Name: "baseline v1", Role: RoleBaseline, Points: b}},
		Markers: []Marker{{At: t0.Add(18 * time.Second), Kind: "deploy"}, {At: t0.Add(25 * time.Second), Kind: "detected", Label: "detected"},
			{At: t0.Add(2 * time.Hour), Kind: "resolved"}},
		From: t0, To: t0.Add(time.Minute),
	}
}

// wellFormed parses svg as XML and counts its elements by name.
func wellFormed(t *testing.T, svg string) map[string]int {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	n := map[string]int{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			n[se.Name.Local]++
		}
	}
}

func TestSVG(t *testing.T) {
	svg := sample().SVG()
	n := wellFormed(t, svg)
	// The NaN splits the version's line in two; the baseline is one line.
	if n["polyline"] != 3 {
		t.Errorf("%d polylines, want 3 (a gap splits the version's line)", n["polyline"])
	}
	for _, want := range []string{`data-marker="deploy"`, `data-marker="detected"`, `class="threshold"`, `threshold 5%`,
		`data-series="version"`, `data-series="baseline"`, `&lt;v2&gt; &amp; baseline`, "10:00:30"} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	// A marker outside the time range is not drawn.
	if strings.Contains(svg, `data-marker="resolved"`) {
		t.Error("a marker two hours after the range's end is drawn")
	}
	for _, bad := range []string{"http://", "https://", "<script"} {
		if strings.Contains(strings.Replace(svg, `xmlns="http://www.w3.org/2000/svg"`, "", 1), bad) {
			t.Errorf("SVG contains %q: it must be self-contained", bad)
		}
	}
}

func TestCompact(t *testing.T) {
	c := sample()
	c.Compact, c.Width, c.Height = true, 120, 30
	svg := c.SVG()
	n := wellFormed(t, svg)
	if n["text"] != 0 {
		t.Errorf("compact chart has %d text elements, want none", n["text"])
	}
	if !strings.Contains(svg, `width="120" height="30"`) {
		t.Error("compact chart ignores its size")
	}
}

func TestScale(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{{0.044, 0.05}, {0.08 * 1.1, 0.1}, {1.3, 2}, {3, 5}, {7, 10}, {100, 100}} {
		if got := niceCeil(tc.in); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("niceCeil(%g) = %g, want %g", tc.in, got, tc.want)
		}
	}
	// Values far above the axis are clipped to it, not drawn off the chart.
	c := Chart{Series: []Series{{Role: RoleVersion, Points: []Point{{t0, 0}, {t0.Add(time.Second), math.Inf(1)}, {t0.Add(2 * time.Second), 3}}}}}
	if got := c.yMax(); got != 5 {
		t.Errorf("yMax = %g, want 5 (infinite values ignored)", got)
	}
	if (Chart{}).yMax() != 1 {
		t.Error("an empty chart's axis should run to 1")
	}
	wellFormed(t, Chart{}.SVG())
}

func TestUnitFormat(t *testing.T) {
	for _, tc := range []struct {
		u    Unit
		v    float64
		want string
	}{{UnitRatio, 0.05, "5%"}, {UnitSeconds, 0.25, "250ms"}, {UnitSeconds, 1.5, "1.5s"}, {UnitNone, 42, "42"}} {
		if got := tc.u.Format(tc.v); got != tc.want {
			t.Errorf("%q.Format(%g) = %q, want %q", tc.u, tc.v, got, tc.want)
		}
	}
}

func BenchmarkSVG(b *testing.B) {
	c := sample()
	b.ReportAllocs()
	for b.Loop() {
		_ = c.SVG()
	}
}
