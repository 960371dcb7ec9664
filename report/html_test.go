package report

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/rollout"
)

// chartsFor draws rec's charts from known series: the bad version's error
// ratio up from a minute after the deploy until the rollback, the
// baseline's steady.
func chartsFor(rec incident.Record) []IncidentChart {
	q := &seriesQuerier{series: map[string]func(time.Time) (float64, bool, error){
		errorQuery: badThenBack(rec),
		// The source no longer keeps the baseline's first minute.
		baselineQuery: func(t time.Time) (float64, bool, error) {
			return 0.004, !t.Before(rec.DeployedAt.Add(-time.Minute)), nil
		},
	}}
	return Charts(context.Background(), q, rec, rec.ResolvedAt.Add(time.Hour))
}

func TestHTMLGolden(t *testing.T) {
	rec := resolved()
	_, inv := resolvedInvite(t)
	opts := Options{Now: fixedNow, Postmortem: inv, Charts: chartsFor(rec)}
	got, err := HTML(rec, opts)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "resolved.html.golden", got)
	page := string(got)
	for _, want := range []string{
		`<svg xmlns="http://www.w3.org/2000/svg" class="chart"`,
		`data-trigger="error-rate"`,
		`data-marker="deploy"`, `data-marker="detected"`, `data-marker="approved"`, `data-marker="rollback"`,
		`data-marker="rolled_back"`, `data-marker="recovered"`, `data-marker="resolved"`,
		`class="threshold"`, `data-series="version"`, `data-series="baseline"`,
		"What changed — the first place to look",
		`<a href="https://git.example/checkout/pull/812" rel="noreferrer">`,
		"<code>registry.example/envoy:1.29</code>",
		"Gaps: baseline v2.4.0: no data at 12 of 187 points",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the HTML report lacks %s", want)
		}
	}
}

func TestHTMLSections(t *testing.T) {
	// Every state renders, with the Markdown report's sections.
	for name, rec := range map[string]incident.Record{"held": held(), "failed": failedRollback(), "escalated": escalated(),
		"sequential": sequentialResolved(), "requested": requested()} {
		t.Run(name, func(t *testing.T) {
			got, err := HTML(rec, Options{Now: fixedNow})
			if err != nil {
				t.Fatal(err)
			}
			noNetwork(t, got)
			md, _ := Markdown(rec, Options{Now: fixedNow})
			for _, line := range strings.Split(string(md), "\n") {
				if h, ok := strings.CutPrefix(line, "## "); ok && !strings.Contains(html.UnescapeString(string(got)), ">"+h+"</h2>") {
					t.Errorf("the HTML report lacks the section %q", h)
				}
			}
			text := html.UnescapeString(string(got))
			changed := NotToldText
			if len(rec.Changes) > 0 {
				changed = "<li><strong>v2.4.1 (bad):</strong> commit <code>9f3c2ab</code>;"
			}
			for _, want := range []string{Title(rec), Summary(rec, time.UTC), changed,
				"No chart: the metric source was not queried for this report."} {
				if !strings.Contains(text, want) {
					t.Errorf("the HTML report lacks %q", want)
				}
			}
		})
	}
}

func TestHTMLEscapes(t *testing.T) {
	rec := held()
	rec.Decisions[0].Reason = `<script>alert(1)</script><img src="https://evil.example/x.png">`
	// Validation refuses such a URL; the page must not trust it anyway.
	rec.Changes = append(rec.Changes, rollout.Change{Version: "v2.4.1", Author: "<b>mallory</b>", ChangeURL: `javascript:alert(1)`})
	got, err := HTML(rec, Options{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(got, []byte("<script>")) || bytes.Contains(got, []byte(`<img src=`)) || bytes.Contains(got, []byte(`href="javascript:`)) {
		t.Error("user text reached the page unescaped")
	}
	noNetwork(t, got)
}

func TestHTMLLoadsNothing(t *testing.T) {
	rec := resolved()
	got, err := HTML(rec, Options{Now: fixedNow, Charts: chartsFor(rec)})
	if err != nil {
		t.Fatal(err)
	}
	noNetwork(t, got)
}

// noNetwork fails unless page loads nothing: no script, no element with a
// src, no stylesheet or icon link, no object or frame, no CSS url() or
// @import. A plain <a href> is a link, not a load, and is allowed.
func noNetwork(t *testing.T, page []byte) {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("the HTML report does not parse: %v", err)
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "iframe", "frame", "object", "embed", "img", "video", "audio", "source", "image", "use", "foreignobject":
				t.Errorf("the report has a <%s> element", n.Data)
			case "link":
				t.Errorf("the report has a <link> element: %v", n.Attr)
			case "style":
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					css := strings.ToLower(c.Data)
					if strings.Contains(css, "url(") || strings.Contains(css, "@import") {
						t.Errorf("the report's CSS loads something: %s", css)
					}
				}
			}
			for _, a := range n.Attr {
				key, val := strings.ToLower(a.Key), strings.ToLower(a.Val)
				switch {
				case key == "src" || key == "srcset" || key == "poster" || key == "background" || key == "xlink:href":
					t.Errorf("<%s %s=%q> loads a resource", n.Data, a.Key, a.Val)
				case key == "href" && n.Data != "a":
					t.Errorf("<%s href=%q> is not a plain link", n.Data, a.Val)
				case key == "style" && (strings.Contains(val, "url(") || strings.Contains(val, "@import")):
					t.Errorf("<%s style=%q> loads something", n.Data, a.Val)
				case strings.HasPrefix(key, "on"):
					t.Errorf("<%s %s> runs a script", n.Data, a.Key)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
}
