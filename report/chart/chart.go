// Package chart draws the line charts of Guardian's console and HTML
// reports as inline SVG: a trigger's values for the new version and the
// baseline over time, its threshold, and markers for what happened (deploy,
// detection, go/no-go, rollback, recovery). The SVG is self-contained (inline
// styles, no scripts, no external references), so a report that embeds it
// opens without a network.
package chart

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
	"time"
)

// Point is one value at one time. A NaN value is a gap in the line.
type Point struct {
	T time.Time
	V float64
}

// Series is one line.
type Series struct {
	// Name labels the line in the legend ("v2", "baseline v1").
	Name string
	// Role styles it: RoleVersion, RoleBaseline, or any other string
	// for a neutral line.
	Role   string
	Points []Point
}

// Series roles.
const (
	RoleVersion  = "version"
	RoleBaseline = "baseline"
)

// Marker is a vertical line at a moment, labelled.
type Marker struct {
	At time.Time
	// Kind names the event for machines (data-marker): "deploy",
	// "detected", "approved", "held", "rollback", "recovered", "resolved".
	Kind string
	// Label is what people read; Kind when empty.
	Label string
}

// Unit says how to print values.
type Unit string

// Units.
const (
	UnitNone    Unit = ""
	UnitRatio   Unit = "ratio"   // 0.05 prints as 5%
	UnitSeconds Unit = "seconds" // 0.25 prints as 250ms
)

// Chart is one chart.
type Chart struct {
	Title  string
	Unit   Unit
	Series []Series
	// Threshold, when set, is drawn as a horizontal dashed line.
	Threshold *float64
	Markers   []Marker
	// From and To bound the time axis; zero takes the data's range.
	From, To time.Time
	// Width and Height in pixels; zero takes 640×240.
	Width, Height int
	// Compact drops the axes' labels, the legend and the markers' labels:
	// a sparkline for a table cell.
	Compact bool
}

var colors = map[string]string{RoleVersion: "#d62728", RoleBaseline: "#1f77b4"}

const neutral = "#555"

// SVG renders the chart.
func (c Chart) SVG() string {
	w, h := c.Width, c.Height
	if w <= 0 {
		w = 640
	}
	if h <= 0 {
		h = 240
	}
	// Plot area inside margins.
	left, right, top, bottom := 56.0, 12.0, 28.0, 36.0
	if c.Compact {
		left, right, top, bottom = 2, 2, 2, 2
	}
	pw, ph := float64(w)-left-right, float64(h)-top-bottom

	from, to := c.timeRange()
	ymax := c.yMax()
	span := to.Sub(from).Seconds()
	if span <= 0 {
		span = 1
	}
	x := func(t time.Time) float64 { return left + pw*t.Sub(from).Seconds()/span }
	y := func(v float64) float64 { return top + ph*(1-v/ymax) }

	var b strings.Builder
	label := c.Title
	if label == "" {
		label = "chart"
	}
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="%s" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`,
		esc(label), w, h, w, h)
	fmt.Fprintf(&b, `<title>%s</title>`, esc(label))
	fmt.Fprintf(&b, `<rect x="%s" y="%s" width="%s" height="%s" fill="#fff" stroke="#ddd"/>`, f(left), f(top), f(pw), f(ph))
	if !c.Compact {
		if c.Title != "" {
			fmt.Fprintf(&b, `<text x="%s" y="14" font-weight="bold">%s</text>`, f(left), esc(c.Title))
		}
		for _, v := range ticks(ymax) {
			fmt.Fprintf(&b, `<line x1="%s" x2="%s" y1="%s" y2="%s" stroke="#eee"/>`, f(left), f(left+pw), f(y(v)), f(y(v)))
			fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="end" fill="#333">%s</text>`, f(left-4), f(y(v)+4), esc(c.Unit.Format(v)))
		}
		for _, t := range timeTicks(from, to) {
			fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="middle" fill="#333">%s</text>`, f(x(t)), f(top+ph+14), t.UTC().Format("15:04:05"))
		}
		fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="end" fill="#777">UTC</text>`, f(left+pw), f(top+ph+28))
	}
	if c.Threshold != nil && *c.Threshold <= ymax {
		ty := y(*c.Threshold)
		fmt.Fprintf(&b, `<line class="threshold" x1="%s" x2="%s" y1="%s" y2="%s" stroke="#ff7f0e" stroke-dasharray="6 4"/>`, f(left), f(left+pw), f(ty), f(ty))
		if !c.Compact {
			fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="end" fill="#ff7f0e">threshold %s</text>`, f(left+pw-2), f(ty-3), esc(c.Unit.Format(*c.Threshold)))
		}
	}
	for _, s := range c.Series {
		color := colors[s.Role]
		if color == "" {
			color = neutral
		}
		for _, run := range runs(s.Points, from, to) {
			var pts []string
			for _, p := range run {
				pts = append(pts, f(x(p.T))+","+f(y(math.Min(p.V, ymax))))
			}
			if len(pts) == 1 {
				fmt.Fprintf(&b, `<circle data-series="%s" cx="%s" cy="%s" r="2" fill="%s"/>`, esc(s.Role), f(x(run[0].T)), f(y(math.Min(run[0].V, ymax))), color)
				continue
			}
			fmt.Fprintf(&b, `<polyline data-series="%s" fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, esc(s.Role), color, strings.Join(pts, " "))
		}
	}
	for i, m := range c.Markers {
		if m.At.Before(from) || m.At.After(to) {
			continue
		}
		mx := x(m.At)
		text := m.Label
		if text == "" {
			text = m.Kind
		}
		fmt.Fprintf(&b, `<g class="marker" data-marker="%s"><line x1="%s" x2="%s" y1="%s" y2="%s" stroke="#444" stroke-dasharray="2 3"/>`, esc(m.Kind), f(mx), f(mx), f(top), f(top+ph))
		fmt.Fprintf(&b, `<title>%s %s</title>`, esc(text), m.At.UTC().Format(time.RFC3339))
		if !c.Compact {
			// Stagger the labels so that close markers stay legible, and
			// keep those near the right edge inside the chart.
			ly := top + 12 + float64(i%3)*12
			if mx > left+0.8*pw {
				fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="end" fill="#444">%s</text>`, f(mx-3), f(ly), esc(text))
			} else {
				fmt.Fprintf(&b, `<text x="%s" y="%s" fill="#444">%s</text>`, f(mx+3), f(ly), esc(text))
			}
		}
		b.WriteString(`</g>`)
	}
	if !c.Compact && len(c.Series) > 0 {
		lx := left + 120
		if c.Title == "" {
			lx = left
		}
		for _, s := range c.Series {
			color := colors[s.Role]
			if color == "" {
				color = neutral
			}
			fmt.Fprintf(&b, `<rect x="%s" y="6" width="10" height="10" fill="%s"/><text x="%s" y="15">%s</text>`, f(lx), color, f(lx+14), esc(s.Name))
			lx += 24 + 7*float64(len([]rune(s.Name)))
		}
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// Format prints v in the unit.
func (u Unit) Format(v float64) string {
	switch u {
	case UnitRatio:
		return strconv.FormatFloat(v*100, 'g', 3, 64) + "%"
	case UnitSeconds:
		if v < 1 {
			return strconv.FormatFloat(v*1000, 'g', 3, 64) + "ms"
		}
		return strconv.FormatFloat(v, 'g', 3, 64) + "s"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func (c Chart) timeRange() (time.Time, time.Time) {
	from, to := c.From, c.To
	if from.IsZero() || to.IsZero() {
		var lo, hi time.Time
		for _, s := range c.Series {
			for _, p := range s.Points {
				if lo.IsZero() || p.T.Before(lo) {
					lo = p.T
				}
				if p.T.After(hi) {
					hi = p.T
				}
			}
		}
		for _, m := range c.Markers {
			if lo.IsZero() || m.At.Before(lo) {
				lo = m.At
			}
			if m.At.After(hi) {
				hi = m.At
			}
		}
		if from.IsZero() {
			from = lo
		}
		if to.IsZero() {
			to = hi
		}
	}
	if !to.After(from) {
		to = from.Add(time.Minute)
	}
	return from, to
}

// yMax is the top of the value axis: a round number above every value
// and the threshold, at least something above zero.
func (c Chart) yMax() float64 {
	m := 0.0
	for _, s := range c.Series {
		for _, p := range s.Points {
			if !math.IsNaN(p.V) && !math.IsInf(p.V, 0) && p.V > m {
				m = p.V
			}
		}
	}
	if c.Threshold != nil && !math.IsInf(*c.Threshold, 0) && *c.Threshold > m {
		m = *c.Threshold
	}
	if m <= 0 {
		return 1
	}
	return niceCeil(m * 1.1)
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// ticks are four evenly spaced values from 0 to max.
func ticks(max float64) []float64 {
	return []float64{0, max / 4, max / 2, 3 * max / 4, max}
}

// timeTicks are up to five round moments between from and to.
func timeTicks(from, to time.Time) []time.Time {
	span := to.Sub(from)
	step := time.Second
	for _, s := range []time.Duration{5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute,
		2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour} {
		step = s
		if span/s <= 5 {
			break
		}
	}
	var out []time.Time
	for t := from.Truncate(step); !t.After(to); t = t.Add(step) {
		if !t.Before(from) {
			out = append(out, t)
		}
	}
	return out
}

// runs splits points into runs without gaps (NaN or infinite values),
// keeping those inside [from, to].
func runs(ps []Point, from, to time.Time) [][]Point {
	var out [][]Point
	var cur []Point
	for _, p := range ps {
		if math.IsNaN(p.V) || math.IsInf(p.V, 0) || p.T.Before(from) || p.T.After(to) {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = nil
			}
			continue
		}
		cur = append(cur, p)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func f(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func esc(s string) string { return html.EscapeString(s) }
