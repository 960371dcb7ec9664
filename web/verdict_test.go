package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"k8s.io/client-go/util/jsonpath"

	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/watch"
)

// ArgoJSONPath is the jsonPath the README's AnalysisTemplate gives Argo
// Rollouts' web metric provider.
const ArgoJSONPath = "{$.verdict}"

// fakeVerdicts judges checkout's v2 healthy, v3 regressed and any other
// version inconclusive; it knows no other service.
func fakeVerdicts(got *[]string) VerdictFunc {
	return func(_ context.Context, service, version, baseline string) (watch.VersionVerdict, error) {
		if service != "checkout" {
			return watch.VersionVerdict{}, fmt.Errorf("%w %q", rollout.ErrUnknownService, service)
		}
		if got != nil {
			*got = append(*got, version+"<-"+baseline)
		}
		vv := watch.VersionVerdict{Service: service, Version: version, Verdict: watch.Inconclusive, Watching: "v2", Triggers: []watch.TriggerVerdict{}}
		switch version {
		case "v2":
			vv.Verdict = watch.Healthy
		case "v3":
			vv.Verdict, vv.Incident = watch.Regressed, 7
		}
		return vv, nil
	}
}

// argoMeasure does what Argo Rollouts' web metric provider does with an
// answer: a non-2xx status is an error; otherwise it decodes the JSON body
// and applies the jsonPath with client-go's jsonpath, the result being the
// printed value.
func argoMeasure(t *testing.T, w *httptest.ResponseRecorder, path string) string {
	t.Helper()
	if w.Code < 200 || w.Code >= 300 {
		t.Fatalf("Argo counts %d as a measurement error: %s", w.Code, w.Body)
	}
	var data any
	if err := json.Unmarshal(w.Body.Bytes(), &data); err != nil {
		t.Fatalf("Could not parse JSON body: %v", err)
	}
	jp := jsonpath.New("metrics")
	if err := jp.Parse(path); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := jp.Execute(&buf, data); err != nil {
		t.Fatalf("Could not find JSONPath in body: %v", err)
	}
	return buf.String()
}

// argoPhase applies the README's conditions: successCondition
// result == "healthy", failureCondition result == "regressed"; neither
// leaves the measurement inconclusive.
func argoPhase(result string) string {
	switch {
	case result == "healthy":
		return "Successful"
	case result == "regressed":
		return "Failed"
	}
	return "Inconclusive"
}

// GET /api/v1/services/{service}/verdict answers 200 with the verdict
// whatever it is, so that Argo Rollouts evaluates its conditions on it.
func TestVerdictEndpoint(t *testing.T) {
	var asked []string
	s := New(Options{Gatherer: prometheus.NewRegistry(), Logger: zap.NewNop(), Verdict: fakeVerdicts(&asked)})
	for _, tc := range []struct {
		name, path string
		code       int
		phase      string
	}{
		{"healthy", "/api/v1/services/checkout/verdict?version=v2&baseline=v1", 200, "Successful"},
		{"regressed", "/api/v1/services/checkout/verdict?version=v3", 200, "Failed"},
		{"not watched", "/api/v1/services/checkout/verdict?version=v9", 200, "Inconclusive"},
		{"unknown service", "/api/v1/services/nope/verdict?version=v2", 404, ""},
		{"no version", "/api/v1/services/checkout/verdict", 400, ""},
		{"invalid version", "/api/v1/services/checkout/verdict?version=" + strings.Repeat("x", 300), 400, ""},
		{"invalid baseline", "/api/v1/services/checkout/verdict?version=v2&baseline=a%01b", 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// As Argo sends it: a GET with the template's headers and no body.
			r := httptest.NewRequest("GET", tc.path, nil)
			r.Header.Set("Accept", "application/json")
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tc.code)
			}
			if tc.code != 200 {
				var e apiError
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
					t.Errorf("error body %s", w.Body)
				}
				return
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := argoPhase(argoMeasure(t, w, ArgoJSONPath)); got != tc.phase {
				t.Errorf("Argo phase %s, want %s (body %s)", got, tc.phase, w.Body)
			}
		})
	}
	if len(asked) != 3 || asked[0] != "v2<-v1" || asked[1] != "v3<-" {
		t.Errorf("verdicts asked: %v", asked)
	}
}

// flaggerPayload is the body Flagger POSTs to a webhook, per its docs.
func flaggerPayload(metadata map[string]string) string {
	b, _ := json.Marshal(map[string]any{
		"name": "podinfo", "namespace": "test", "phase": "Progressing", "checksum": "85d557f47b",
		"metadata": metadata,
	})
	return string(b)
}

// Flagger's webhooks: 200 lets Flagger go on (for rollback: roll back),
// anything else holds it (for rollback: do not roll back).
func TestFlaggerWebhooks(t *testing.T) {
	var asked []string
	s := New(Options{Gatherer: prometheus.NewRegistry(), Logger: zap.NewNop(), Verdict: fakeVerdicts(&asked)})
	for _, tc := range []struct {
		hook, version string
		code          int
	}{
		{"confirm-promotion", "v2", 200},
		{"confirm-promotion", "v3", 412},
		{"confirm-promotion", "v9", 412},
		{"rollback", "v2", 412},
		{"rollback", "v3", 200},
		{"rollback", "v9", 412},
		{"rollout", "v2", 200},
		{"rollout", "v9", 200},
		{"rollout", "v3", 412},
		{"pre-rollout", "v9", 200},
		{"confirm-rollout", "v3", 412},
		{"confirm-traffic-increase", "v9", 200},
	} {
		t.Run(tc.hook+" "+tc.version, func(t *testing.T) {
			body := flaggerPayload(map[string]string{"version": tc.version})
			r := httptest.NewRequest("POST", "/api/v1/services/checkout/verdict/flagger/"+tc.hook, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tc.code)
			}
			var a FlaggerAnswer
			if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
				t.Fatal(err)
			}
			if a.Hook != tc.hook || a.Version != tc.version || a.Pass != (tc.code == 200) || a.Service != "checkout" {
				t.Errorf("answer %+v", a)
			}
		})
	}

	for _, tc := range []struct {
		name, path, body string
		code             int
		asked            string
	}{
		{"query over metadata", "/api/v1/services/checkout/verdict/flagger/confirm-promotion?version=v2&baseline=v1",
			flaggerPayload(map[string]string{"version": "v3"}), 200, "v2<-v1"},
		{"baseline from metadata", "/api/v1/services/checkout/verdict/flagger/rollback",
			flaggerPayload(map[string]string{"version": "v3", "baseline": "v1"}), 200, "v3<-v1"},
		{"fields Flagger may add", "/api/v1/services/checkout/verdict/flagger/rollback",
			`{"name":"podinfo","namespace":"test","phase":"Progressing","type":"rollback","metadata":{"version":"v3"}}`, 200, "v3<-"},
		{"no body", "/api/v1/services/checkout/verdict/flagger/rollback?version=v3", "", 200, "v3<-"},
		{"no version", "/api/v1/services/checkout/verdict/flagger/confirm-promotion", flaggerPayload(nil), 400, ""},
		{"unknown hook", "/api/v1/services/checkout/verdict/flagger/post-rollout", flaggerPayload(map[string]string{"version": "v2"}), 404, ""},
		{"unknown service", "/api/v1/services/nope/verdict/flagger/rollback", flaggerPayload(map[string]string{"version": "v2"}), 404, ""},
		{"not JSON", "/api/v1/services/checkout/verdict/flagger/rollback", "version=v2", 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked = nil
			w := do(t, s.Handler(), "POST", tc.path, "", tc.body)
			if w.Code != tc.code {
				t.Fatalf("%d %s, want %d", w.Code, w.Body, tc.code)
			}
			if tc.asked != "" && (len(asked) != 1 || asked[0] != tc.asked) {
				t.Errorf("asked %v, want %s", asked, tc.asked)
			}
		})
	}
}

// Under --web.read-auth=api the verdict and the Flagger webhooks need a
// token with the read scope, sent as Argo's web provider sends headers.
func TestVerdictReadAuth(t *testing.T) {
	toks := scopedTokens(t)
	for _, mode := range []ReadAuth{ReadOpen, ReadAuthAPI} {
		s := New(Options{Gatherer: prometheus.NewRegistry(), Logger: zap.NewNop(), Verdict: fakeVerdicts(nil),
			Tokens: func() *Tokens { return toks }, Flags: Flags{ReadAuth: mode}})
		for _, tok := range []struct {
			token string
			code  int
		}{{"", 401}, {deployToken, 403}, {readToken, 200}} {
			want := tok.code
			if mode == ReadOpen {
				want = 200
			}
			auth := ""
			if tok.token != "" {
				auth = "Bearer " + tok.token
			}
			if w := do(t, s.Handler(), "GET", "/api/v1/services/checkout/verdict?version=v2", auth, ""); w.Code != want {
				t.Errorf("%s: GET with %q: %d, want %d", mode, tok.token, w.Code, want)
			}
			if w := do(t, s.Handler(), "POST", "/api/v1/services/checkout/verdict/flagger/confirm-promotion", auth,
				flaggerPayload(map[string]string{"version": "v2"})); w.Code != want {
				t.Errorf("%s: POST with %q: %d, want %d", mode, tok.token, w.Code, want)
			}
		}
	}
}
