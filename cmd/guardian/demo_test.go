package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// `guardian demo --yes`, the README's main command, runs the whole
// procedure; without a terminal on stdin it ends with the incident, and it
// prints the paths of the report and the invite, which exist. The delay it
// tells between the deploy and the detection is the report's.
func TestDemo(t *testing.T) {
	var out, errb bytes.Buffer
	dir := t.TempDir()
	root := newRoot(&out, &errb)
	root.SetArgs([]string{"demo", "--yes", "--timeout", "90s", "--dir", dir, "--listen", "127.0.0.1:0"})
	root.SetIn(strings.NewReader("")) // not a terminal: the demo does not stay
	if err := root.Execute(); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	text := out.String()
	// The sequential trigger can fire at the very tick that sees v2, so
	// "saw v2" and "FIRING" may come in either order.
	inOrder(t, text, "rolling out checkout v2", "guardian saw checkout v2 serving", "detected ")
	inOrder(t, text, "learnt the running version: v1", "rolling out checkout v2",
		"trigger error-rate FIRING", "incident.declared", "detected ", "approval.requested",
		"approval.granted", "rollback.started", "rollback.succeeded", "recovery.confirmed", "incident.resolved",
		"report.written", "postmortem.scheduled", "checkout is back on v1")
	if strings.Contains(text, "keep running") {
		t.Errorf("the demo says it keeps running, but it ended:\n%s", text)
	}
	for _, f := range []string{"incident-1.md", "incident-1.json", "incident-1-postmortem.ics"} {
		p := filepath.Join(dir, "reports", f)
		if !strings.Contains(text, p) {
			t.Errorf("path %s not printed", p)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	checkOneDeployClock(t, text, dir)
	// Recovery reasons in plain words, not a list of thresholds.
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "recovery.") && strings.Contains(line, "absolute thresholds") {
			t.Errorf("recovery line reads wrong: %s", line)
		}
	}
	if !regexp.MustCompile(`recovery\.confirmed .*error-rate: [0-9.e-]+ is (within 50% of the baseline's|below the trigger's 0\.05)`).MatchString(text) {
		t.Errorf("recovery.confirmed does not say how error-rate stands:\n%s", text)
	}
}

// checkOneDeployClock: the terminal's "detected N after the deploy" is the
// report's deploy → detection, in its JSON and its Markdown.
func checkOneDeployClock(t *testing.T, text, dir string) {
	t.Helper()
	m := regexp.MustCompile(`detected (\S+) after the deploy of v2 \(the report's deploy → detection\)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no detection delay in the output:\n%s", text)
	}
	if strings.Count(text, "after the deploy") != 1 {
		t.Errorf("the detection delay is told more than once:\n%s", text)
	}
	b, err := os.ReadFile(filepath.Join(dir, "reports", "incident-1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Impact struct {
			DeployToDetection *float64 `json:"deploy_to_detection_seconds"`
		} `json:"impact"`
	}
	if err := json.Unmarshal(b, &rep); err != nil || rep.Impact.DeployToDetection == nil {
		t.Fatalf("report JSON: %v, deploy_to_detection_seconds %v", err, rep.Impact.DeployToDetection)
	}
	want := time.Duration(*rep.Impact.DeployToDetection * float64(time.Second)).Round(time.Second).String()
	if m[1] != want {
		t.Errorf("terminal says detected %s after the deploy, the report's JSON %gs (%s)", m[1], *rep.Impact.DeployToDetection, want)
	}
	md, err := os.ReadFile(filepath.Join(dir, "reports", "incident-1.md"))
	if err != nil {
		t.Fatal(err)
	}
	if row := "| Deploy → detection | " + m[1] + " |"; !strings.Contains(string(md), row) {
		t.Errorf("report lacks %q", row)
	}
}

// A no-go at the prompt holds the incident and Guardian keeps watching; the
// demo says how to approve later, and the approval, given with the printed
// command through the daemon's API, runs the rollback, the recovery and
// the report, which the demo follows. Then the demo stays up and the
// printed `guardian report 1` works against it, until it is stopped
// (Ctrl-C), which stops everything it started.
func TestDemoHoldThenApproveLater(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	dir := t.TempDir()
	out := &syncBuffer{}
	var errb syncBuffer
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	root := newRoot(out, &errb)
	root.SetArgs([]string{"demo", "--stay", "--timeout", "90s", "--dir", dir, "--listen", "127.0.0.1:0"})
	root.SetIn(strings.NewReader("no\n"))
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	await := func(what string) string {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for !strings.Contains(out.String(), what) {
			select {
			case err := <-done:
				t.Fatalf("the demo ended (%v) before printing %q:\n%s\nstderr:\n%s", err, what, out.String(), errb.String())
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the output:\n%s", what, out.String())
			}
		}
		return out.String()
	}

	text := await("This terminal follows the incident")
	inOrder(t, text, "Roll back checkout v2 → v1? [y/N]", "approval.denied", "no-go: incident #1 is held; checkout stays on v2 and Guardian keeps watching it",
		"To roll back later, approve from another terminal:", " approve 1 --url http://127.0.0.1:", "or press Approve in the console at http://127.0.0.1:")
	apiURL := regexp.MustCompile(`console at (http://127\.0\.0\.1:\d+)/`).FindStringSubmatch(text)[1]

	// Held, as the daemon says.
	var got bytes.Buffer
	if code := run([]string{"incidents", "show", "1", "--url", apiURL}, &got, &got); code != 0 || !strings.Contains(got.String(), "checkout  held") {
		t.Fatalf("incidents show 1: exit %d\n%s", code, got.String())
	}

	// Approve with the printed command, as from another terminal.
	line := regexp.MustCompile(`(?m)^\s+guardian (approve 1 .*)$`).FindStringSubmatch(text)
	if line == nil {
		t.Fatalf("no approve command printed:\n%s", text)
	}
	args, err := shellFields(line[1])
	if err != nil {
		t.Fatal(err)
	}
	got.Reset()
	if code := run(args, &got, &got); code != 0 {
		t.Fatalf("guardian %s: exit %d\n%s", line[1], code, got.String())
	}

	text = await("Ctrl-C stops them")
	inOrder(t, text, "This terminal follows the incident", "approval.granted     token:demo", "rollback.started", "recovery.confirmed",
		"incident.resolved", "report.written", "checkout is back on v1", "incident report: "+filepath.Join(dir, "reports", "incident-1.md"),
		"Guardian and the demo service keep running; Ctrl-C stops them.", "console:   "+apiURL+"/")
	checkOneDeployClock(t, text, dir)

	// The printed commands work against the demo's Guardian.
	report := regexp.MustCompile(`(?m)^\s+guardian (report 1 .*)$`).FindStringSubmatch(text)
	incidents := regexp.MustCompile(`(?m)^\s+try:\s+guardian (incidents .*)$`).FindStringSubmatch(text)
	if report == nil || incidents == nil {
		t.Fatalf("no report or incidents command printed:\n%s", text)
	}
	got.Reset()
	if code := run(strings.Fields(incidents[1]), &got, &got); code != 0 || !regexp.MustCompile(`(?m)^1\s+checkout\s+SEV-1\s+resolved\s+v2\s+v1`).MatchString(got.String()) {
		t.Fatalf("guardian %s: exit %d\n%s", incidents[1], code, got.String())
	}
	got.Reset()
	if code := run(strings.Fields(report[1]), &got, &got); code != 0 || !strings.Contains(got.String(), "# Incident #1 — checkout v2 rolled back to v1") {
		t.Fatalf("guardian %s: exit %d\n%s", report[1], code, got.String())
	}

	// Ctrl-C: everything stops, cleanly.
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo: %v\n%s", err, errb.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("the demo did not stop")
	}
	if want := "stopped Guardian and the demo service; config, state and reports stay in " + dir; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
	if errb.String() != "" {
		t.Errorf("stderr: %s", errb.String())
	}
	got.Reset()
	if code := run(strings.Fields(report[1]), &got, &got); code == 0 || !strings.Contains(got.String(), "connection refused") {
		t.Errorf("after the demo stopped, guardian %s: exit %d\n%s", report[1], code, got.String())
	}
	http.DefaultClient.CloseIdleConnections()
	goleak.VerifyNone(t, leaks)
}

// Guardian listens where the CLI looks by default; when another process
// holds that address, the demo takes a free port and says why, while an
// address given with --listen is not silently replaced.
func TestDemoListenFallback(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()

	l, why, err := listenGuardian(addr, false)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Addr().String() == addr || !strings.Contains(why, "address already in use") {
		t.Errorf("listening on %s, why %q", l.Addr(), why)
	}
	if _, _, err := listenGuardian(addr, true); err == nil || !strings.Contains(err.Error(), "--listen: ") {
		t.Errorf("explicit taken address: %v", err)
	}

	free, why, err := listenGuardian("127.0.0.1:0", false)
	if err != nil || why != "" {
		t.Fatalf("free address: %v, %q", err, why)
	}
	free.Close()
}

// A demo run that cannot answer (no terminal, no --yes) reads "no": the
// incident is held, and without --stay the demo ends there, saying how it
// could go on. --stay and --exit exclude each other.
func TestDemoNoGoWithoutTerminal(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"demo", "--stay", "--exit"}, &out, &errb); code == 0 || !strings.Contains(errb.String(), "[exit stay] were all set") {
		t.Errorf("--stay --exit: exit %d, stderr %q", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	dir := t.TempDir()
	root := newRoot(&out, &errb)
	root.SetArgs([]string{"demo", "--timeout", "90s", "--dir", dir, "--listen", "127.0.0.1:0"})
	root.SetIn(strings.NewReader(""))
	if err := root.Execute(); err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	inOrder(t, out.String(), "Roll back checkout v2 → v1? [y/N]", "approval.denied", "no-go: incident #1 is held and checkout stays on v2. The demo ends here",
		"run it with --stay to keep Guardian watching")
	if strings.Contains(out.String(), "rollback.started") {
		t.Errorf("a no-go rolled back:\n%s", out.String())
	}
}

// inOrder fails unless text holds each of want, in order.
func inOrder(t *testing.T, text string, want ...string) {
	t.Helper()
	at := 0
	for _, w := range want {
		i := strings.Index(text[at:], w)
		if i < 0 {
			t.Fatalf("output lacks %q after position %d:\n%s", w, at, text)
		}
		at += i
	}
}

// shellFields splits a command line as a POSIX shell would, for the
// quoting the demo prints (single quotes, with '\” for a quote).
func shellFields(s string) ([]string, error) {
	var (
		fields  []string
		cur     strings.Builder
		in      bool // inside a field
		quoted  bool // inside single quotes
		escaped bool // after a backslash
	)
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quoted && r == '\'':
			quoted = false
		case quoted:
			cur.WriteRune(r)
		case r == '\'':
			quoted, in = true, true
		case r == '\\':
			escaped, in = true, true
		case r == ' ' || r == '\t':
			if in {
				fields = append(fields, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quoted || escaped {
		return nil, errors.New("unterminated quote or escape in " + s)
	}
	if in {
		fields = append(fields, cur.String())
	}
	return fields, nil
}

func TestShellQuote(t *testing.T) {
	for _, s := range []string{"guardian", "bin/guardian", "/tmp/guardian-demo-1/token", "a b", "it's", "", "$HOME"} {
		got, err := shellFields("x " + shellQuote(s) + " y")
		if err != nil || len(got) != 3 || got[1] != s {
			t.Errorf("shellQuote(%q) = %s, read back as %q (%v)", s, shellQuote(s), got, err)
		}
	}
	if q := shellQuote("/tmp/guardian-demo-1/token"); q != "/tmp/guardian-demo-1/token" {
		t.Errorf("a plain path is quoted: %s", q)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
