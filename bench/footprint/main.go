// Command footprint measures what one Guardian costs while it watches 1, 10,
// 100 and 1,000 services through the embedded source: resident memory and
// CPU per evaluation tick, in the full build and in the slim one.
//
// It runs three kinds of process so that each measurement sees Guardian
// alone: the orchestrator (no flags) builds this command once per build
// flavour (go build -tags ...; the full build and the slim one, -tags
// nokubernetes, by default) and cmd/guardian likewise (stripped and without cgo, for the
// executable's size), starts one synthetic metrics server (-serve: every
// service's /metrics at /svc/N/metrics, about 250 series each: request
// counters by version, method and code, a latency histogram, build info and
// Go-runtime-like gauges), then, for each build and service count, a fresh
// Guardian process (-guardian N) of that build, built with app.New from a
// generated configuration: each service scraped every 5 s, evaluated every
// 5 s, with the example's error-rate and p99-latency triggers and a
// sequential trigger. The Guardian process announces a deploy (v1 → v2) of
// every service so that every trigger is evaluated at every tick, lets it
// run, then reads its VmRSS and RssAnon from /proc/self/status after a GC
// and its CPU time (getrusage) over a number of ticks.
//
//	go run ./bench/footprint
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/app"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("footprint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		serve    = fs.Bool("serve", false, "serve synthetic /metrics (internal)")
		guardian = fs.Int("guardian", 0, "run one Guardian watching this many services and print its figures (internal)")
		target   = fs.String("target", "", "address of the metrics server (internal)")
		counts   = fs.String("services", "1,10,100,1000", "service counts to measure")
		builds   = fs.String("builds", "full=,slim=nokubernetes", "builds to measure: name=tags[@revision], comma-separated (several tags of one build joined with +; @revision builds that git revision of this repository instead of the working tree, e.g. full-before=@HEAD~3,slim-before=nokubernetes@HEAD~3)")
		warmup   = fs.Duration("warmup", 15*time.Second, "time before measuring")
		measure  = fs.Duration("measure", 15*time.Second, "time over which CPU is measured")
		interval = fs.Duration("interval", 5*time.Second, "scrape and evaluation interval")
		heap     = fs.String("heapprofile", "", "write each Guardian's heap profile to this path prefix (with the build and the service count appended), and its CPU profile over the measured time (.cpu appended too)")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	switch {
	case *serve:
		err = serveMetrics(stdout)
	case *guardian > 0:
		err = runGuardian(*guardian, *target, *warmup, *measure, *interval, *heap, stdout)
	default:
		err = orchestrate(*builds, *counts, *warmup, *measure, *interval, *heap, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// result is one Guardian process's figures.
type result struct {
	Services     int     `json:"services"`
	Series       int     `json:"series"`
	Stored       float64 `json:"series_stored"`
	RSS          float64 `json:"rss_mib"`
	RSSAnon      float64 `json:"rss_anon_mib"`
	RSSFile      float64 `json:"rss_file_mib"`
	HeapInuse    float64 `json:"heap_inuse_mib"`
	HeapAlloc    float64 `json:"heap_alloc_mib"`
	Stacks       float64 `json:"stacks_mib"`
	Ticks        float64 `json:"ticks"`
	CPUPerTick   float64 `json:"cpu_ms_per_tick"`
	Goroutines   int     `json:"goroutines"`
	Evaluations  float64 `json:"evaluations"`
	ScrapeErrors float64 `json:"scrape_failures"`
}

// build is one build flavour: this command and cmd/guardian built with
// its tags, from the working tree or from a git revision.
type build struct {
	name, tags string
	revision   string // git revision to build; empty: the working tree
	commit     string // revision's abbreviated commit
	bench      string // this command, built with the tags
	size       int64  // bytes of cmd/guardian, stripped
}

// parseBuilds reads -builds: "full=,slim=nokubernetes" (tags joined by +),
// each optionally followed by @revision ("before=@HEAD~1",
// "slim-before=nokubernetes@5088f0a").
func parseBuilds(spec string) ([]build, error) {
	var bs []build
	for _, b := range strings.Split(spec, ",") {
		name, tags, ok := strings.Cut(strings.TrimSpace(b), "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("invalid build %q: want name=tags or name=tags@revision", b)
		}
		tags, rev, hasRev := strings.Cut(tags, "@")
		if hasRev && rev == "" {
			return nil, fmt.Errorf("invalid build %q: empty revision after @", b)
		}
		bs = append(bs, build{name: name, tags: strings.ReplaceAll(tags, "+", ","), revision: rev})
	}
	return bs, nil
}

// checkout writes b.revision's tree into a directory under dir (git
// archive of the repository holding the working directory) and returns
// it; the working tree's root when b has no revision.
func (b *build) checkout(dir string, stderr io.Writer) (string, error) {
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("finding the repository (run this command inside it): %w", err)
	}
	root := strings.TrimSpace(string(top))
	if b.revision == "" {
		return root, nil
	}
	commit, err := exec.Command("git", "-C", root, "rev-parse", "--short", b.revision+"^{commit}").Output()
	if err != nil {
		return "", fmt.Errorf("build %s: unknown git revision %q: %w", b.name, b.revision, err)
	}
	b.commit = strings.TrimSpace(string(commit))
	src := filepath.Join(dir, "src-"+b.commit)
	if _, err := os.Stat(src); err == nil {
		return src, nil // another build of the same revision
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	archive := exec.Command("git", "-C", root, "archive", "--format=tar", b.commit)
	extract := exec.Command("tar", "-x", "-C", src)
	archive.Stderr, extract.Stderr = stderr, stderr
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	extract.Stdin = pipe
	if err := archive.Start(); err != nil {
		return "", err
	}
	if err := extract.Run(); err != nil {
		_ = archive.Wait()
		return "", fmt.Errorf("extracting revision %s: %w", b.commit, err)
	}
	if err := archive.Wait(); err != nil {
		return "", fmt.Errorf("git archive %s: %w", b.commit, err)
	}
	return src, nil
}

// compile builds this command (for the measurement) and cmd/guardian (for
// the executable's size) with b's tags into dir, both stripped as the
// Dockerfile builds them, from b's revision or the working tree.
func (b *build) compile(dir string, stderr io.Writer) error {
	src, err := b.checkout(dir, stderr)
	if err != nil {
		return err
	}
	b.bench = filepath.Join(dir, "footprint-"+b.name)
	guardian := filepath.Join(dir, "guardian-"+b.name)
	for _, out := range []struct{ path, pkg string }{
		{b.bench, "./bench/footprint"},
		{guardian, "./cmd/guardian"},
	} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-tags", b.tags, "-o", out.path, out.pkg)
		cmd.Dir = src
		// As the Dockerfile builds it: without cgo, a static executable.
		// With cgo, the Helm SDK's dependency on package plugin makes the
		// linker export every symbol and keep every exported method: 98 MB
		// instead of 75, and 25 MiB more of it resident.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s of %s with -tags %q: %w", out.pkg, b.source(), b.tags, err)
		}
	}
	st, err := os.Stat(guardian)
	if err != nil {
		return err
	}
	b.size = st.Size()
	return nil
}

// source is where b was built from, for messages.
func (b build) source() string {
	if b.revision == "" {
		return "the working tree"
	}
	return "revision " + b.revision
}

// tagsText is the build's tags, and its commit when built from a
// revision, for the table.
func (b build) tagsText() string {
	t := "no tags"
	if b.tags != "" {
		t = "-tags " + b.tags
	}
	if b.commit != "" {
		t = "@" + b.commit + ", " + t
	}
	return t
}

func orchestrate(buildSpec, counts string, warmup, measure, interval time.Duration, heap string, stdout, stderr io.Writer) error {
	builds, err := parseBuilds(buildSpec)
	if err != nil {
		return err
	}
	var ns []int
	for _, c := range strings.Split(counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n <= 0 {
			return fmt.Errorf("invalid service count %q", c)
		}
		ns = append(ns, n)
	}
	start := time.Now()
	dir, err := os.MkdirTemp("", "guardian-footprint-builds-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for i := range builds {
		if err := builds[i].compile(dir, stderr); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "built %s (%s): guardian %.1f MB (%s)\n", builds[i].name, builds[i].tagsText(),
			float64(builds[i].size)/1e6, time.Since(start).Round(time.Second))
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := exec.CommandContext(ctx, builds[0].bench, "-serve")
	srv.Stderr = stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		return err
	}
	// The server serves until its stdin closes: keep it open until the
	// end (without a pipe it reads the null device, ends at once, and
	// every scrape fails).
	stdin, err := srv.StdinPipe()
	if err != nil {
		return err
	}
	defer stdin.Close()
	if err := srv.Start(); err != nil {
		return fmt.Errorf("starting the metrics server: %w", err)
	}
	defer func() { cancel(); _ = srv.Wait() }()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the metrics server's address: %w", err)
	}
	addr = strings.TrimSpace(addr)

	type row struct {
		b build
		r result
	}
	var rows []row
	for _, b := range builds {
		for _, n := range ns {
			heapPrefix := heap
			if heap != "" {
				heapPrefix = heap + "." + b.name
			}
			cmd := exec.CommandContext(ctx, b.bench, "-guardian", strconv.Itoa(n), "-target", addr,
				"-warmup", warmup.String(), "-measure", measure.String(), "-interval", interval.String(), "-heapprofile", heapPrefix)
			cmd.Stderr = stderr
			out, err := cmd.Output()
			if err != nil {
				return fmt.Errorf("%s build, guardian with %d services: %w", b.name, n, err)
			}
			var r result
			if err := json.Unmarshal(out, &r); err != nil {
				return fmt.Errorf("%s build, guardian with %d services: %w (%s)", b.name, n, err, out)
			}
			if r.Stored <= float64(3*n) {
				// Guardian's own up, scrape_duration_seconds and
				// scrape_samples_scraped only.
				return fmt.Errorf("%s build, guardian with %d services: no series of the target stored (%.0f failed scrapes): is the metrics server up?", b.name, n, r.ScrapeErrors)
			}
			fmt.Fprintf(stderr, "%s build, %d services: %.1f MiB, %.0f failed scrapes (%s)\n", b.name, n, r.RSS, r.ScrapeErrors, time.Since(start).Round(time.Second))
			rows = append(rows, row{b, r})
		}
	}
	fmt.Fprintf(stdout, "Footprint: scrape and evaluation every %s, %s warm-up, CPU over %s, GOMAXPROCS %d, %s in all.\n\n",
		interval, warmup, measure, runtime.GOMAXPROCS(0), time.Since(start).Round(time.Second))
	fmt.Fprintln(stdout, "| build | executable | services | series scraped | series stored | VmRSS | RssAnon (heap, stacks) | RssFile (mapped binary) | Go heap in use | Go heap live | goroutine stacks (goroutines) | RssAnon per service | CPU per tick | CPU per service per tick | share of one core | trigger evaluations per tick |")
	fmt.Fprintln(stdout, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, x := range rows {
		r := x.r
		fmt.Fprintf(stdout, "| %s (%s) | %.1f MB | %d | %d | %.0f | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB (%d) | %s | %.1f ms | %.2f ms | %.2f%% | %.0f |\n",
			x.b.name, x.b.tagsText(), float64(x.b.size)/1e6,
			r.Services, r.Series, r.Stored, r.RSS, r.RSSAnon, r.RSSFile, r.HeapInuse, r.HeapAlloc, r.Stacks, r.Goroutines, perService(r), r.CPUPerTick, r.CPUPerTick/float64(r.Services),
			100*r.CPUPerTick/float64(interval.Milliseconds()), r.Evaluations/r.Ticks)
	}
	return nil
}

func perService(r result) string {
	kib := r.RSSAnon * 1024 / float64(r.Services)
	if kib >= 1024 {
		return fmt.Sprintf("%.1f MiB", kib/1024)
	}
	return fmt.Sprintf("%.0f KiB", kib)
}

// serveMetrics serves every service's synthetic /metrics on a loopback
// port, which it prints first, until its parent exits.
func serveMetrics(stdout io.Writer) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, l.Addr().String())
	start := time.Now()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /svc/{n}/metrics", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		writeMetrics(w, n, time.Since(start).Seconds())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		// Exit with the parent: stdin is closed when it goes away.
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = srv.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

var (
	codes   = []string{"200", "201", "204", "301", "304", "400", "401", "403", "404", "429", "500", "502", "503"}
	methods = []string{"GET", "POST"}
	buckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
)

// writeMetrics writes service n's metrics after t seconds: about 250
// series, counters growing at steady rates (v2 a little worse than v1).
func writeMetrics(w io.Writer, n int, t float64) {
	bw := bufio.NewWriterSize(w, 32<<10)
	defer bw.Flush()
	fmt.Fprintln(bw, "# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter")
	for vi, v := range []string{"v1", "v2"} {
		for mi, m := range methods {
			for ci, c := range codes {
				rate := 10.0 / float64(1+ci) / float64(1+mi)
				if c[0] == '5' {
					rate *= 0.01 * float64(1+vi)
				}
				fmt.Fprintf(bw, "http_requests_total{service=\"svc%d\",version=%q,method=%q,code=%q} %g\n", n, v, m, c, math.Floor(rate*t))
			}
		}
	}
	fmt.Fprintln(bw, "# HELP http_request_duration_seconds Request latency.\n# TYPE http_request_duration_seconds histogram")
	for _, v := range []string{"v1", "v2"} {
		for mi, m := range methods {
			total := 20 * t / float64(1+mi)
			for _, b := range buckets {
				share := 1 - math.Exp(-b/0.05)
				fmt.Fprintf(bw, "http_request_duration_seconds_bucket{service=\"svc%d\",version=%q,method=%q,le=\"%g\"} %g\n", n, v, m, b, math.Floor(total*share))
			}
			fmt.Fprintf(bw, "http_request_duration_seconds_bucket{service=\"svc%d\",version=%q,method=%q,le=\"+Inf\"} %g\n", n, v, m, math.Floor(total))
			fmt.Fprintf(bw, "http_request_duration_seconds_sum{service=\"svc%d\",version=%q,method=%q} %g\n", n, v, m, total*0.05)
			fmt.Fprintf(bw, "http_request_duration_seconds_count{service=\"svc%d\",version=%q,method=%q} %g\n", n, v, m, math.Floor(total))
		}
	}
	fmt.Fprintln(bw, "# TYPE app_build_info gauge")
	fmt.Fprintf(bw, "app_build_info{service=\"svc%d\",version=\"v1\"} 1\napp_build_info{service=\"svc%d\",version=\"v2\"} 1\n", n, n)
	// Runtime-like gauges, as a Go service's default collectors add.
	for i := range 136 {
		fmt.Fprintf(bw, "# TYPE go_runtime_metric_%d gauge\ngo_runtime_metric_%d %g\n", i, i, float64(i)*1.5+math.Sin(t+float64(i)))
	}
}

// seriesPerService is what writeMetrics exposes.
const seriesPerService = 2*2*13 + 2*2*(12+3) + 2 + 136

// serviceConfig is service %[1]d's entry; its triggers are
// serviceTriggers, written out for the first service and an alias for the
// others (a thousand copies would exceed the 1 MiB a configuration file
// may have).
const serviceConfig = `  - name: svc%[1]d
    scrape: {url: "http://%[2]s/svc/%[1]d/metrics", interval: %[3]s}
    deploy: {version_query: 'sum by (version) (rate(http_requests_total[1m]))'}
    watch_window: 1h
    triggers: %[4]s
`

const serviceTriggers = `&triggers
      - name: error-rate
        query: >-
          (sum(rate(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.Window}}])) or vector(0))
          / sum(rate(http_requests_total{version="{{.Version}}"}[{{.Window}}]))
        above: 0.05
        above_baseline: 2x
        for: 30s
        min_requests: 50
        volume_query: 'sum(increase(http_requests_total{version="{{.Version}}"}[{{.Window}}]))'
      - name: p99-latency
        query: 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{version="{{.Version}}"}[{{.Window}}])))'
        window: 2m
        above: 0.5
        above_baseline: "+0.1"
      - name: errors-sequential
        sequential:
          errors: 'sum(increase(http_requests_total{version="{{.Version}}",code=~"5.."}[{{.SinceDeploy}}]))'
          requests: 'sum(increase(http_requests_total{version="{{.Version}}"}[{{.SinceDeploy}}]))'
`

// runGuardian runs one Guardian watching n services of the server at
// target and prints its figures as JSON.
func runGuardian(n int, target string, warmup, measure, interval time.Duration, heap string, stdout io.Writer) error {
	app.SetGCDefault() // as guardian run does
	if heap != "" {
		// A sample every 16 KiB allocated instead of 512 KiB: a thousand
		// services' structures of a few KiB each show by their own lines.
		runtime.MemProfileRate = 16 << 10
	}
	dir, err := os.MkdirTemp("", "guardian-footprint-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  evaluation_interval: %s\n  state_dir: %s\nservices:\n", interval, filepath.Join(dir, "data"))
	for i := range n {
		triggers := "*triggers"
		if i == 0 {
			triggers = strings.TrimSuffix(serviceTriggers, "\n")
		}
		fmt.Fprintf(&b, serviceConfig, i, target, interval, triggers)
	}
	cfgPath := filepath.Join(dir, "guardian.yml")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o600); err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	a, err := app.New(app.Options{ConfigFile: cfgPath, Logger: zap.NewNop(), Registry: reg, Listener: l, NoWatch: true})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for !a.Ready() {
		select {
		case err := <-done:
			cancel()
			return fmt.Errorf("guardian stopped: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Let every service scrape, then announce a deploy of each, so that
	// every trigger is evaluated at every tick.
	time.Sleep(interval + time.Second)
	for i := range n {
		if _, err := a.Announce(ctx, fmt.Sprintf("svc%d", i), "v2", "v1"); err != nil {
			cancel()
			return fmt.Errorf("announcing a deploy of svc%d: %w", i, err)
		}
	}
	time.Sleep(warmup)

	if heap != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d.cpu", heap, n))
		if err != nil {
			cancel()
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			cancel()
			return err
		}
	}
	cpu0 := cpuTime()
	evals0 := counterSum(reg, "guardian_evaluations_total")
	start := time.Now()
	time.Sleep(measure)
	if heap != "" {
		pprof.StopCPUProfile()
	}
	cpu := cpuTime() - cpu0
	elapsed := time.Since(start)
	evals := counterSum(reg, "guardian_evaluations_total") - evals0

	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, anon, file := procStatus("VmRSS"), procStatus("RssAnon"), procStatus("RssFile")
	if heap != "" {
		if err := writeHeapProfile(fmt.Sprintf("%s.%d", heap, n)); err != nil {
			cancel()
			return err
		}
	}
	r := result{
		Services: n, Series: n * seriesPerService,
		RSS: rss / 1024, RSSAnon: anon / 1024, RSSFile: file / 1024, HeapInuse: float64(ms.HeapInuse) / (1 << 20),
		HeapAlloc: float64(ms.HeapAlloc) / (1 << 20), Stacks: float64(ms.StackInuse) / (1 << 20),
		Ticks:       elapsed.Seconds() / interval.Seconds(),
		Goroutines:  runtime.NumGoroutine(),
		Evaluations: evals,
	}
	r.CPUPerTick = float64(cpu.Milliseconds()) / r.Ticks
	r.ScrapeErrors = counterSum(reg, "guardian_scrape_failures_total")
	r.Stored = gaugeSum(reg, "guardian_embedded_series")
	cancel()
	if err := <-done; err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(r)
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStatus returns a "kB" field of /proc/self/status, in KiB.
func procStatus(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return math.NaN()
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return math.NaN()
			}
			return f
		}
	}
	return math.NaN()
}

// counterSum adds up every series of a counter in reg.
func counterSum(reg *prometheus.Registry, name string) float64 {
	return metricSum(reg, name, func(m *dto.Metric) float64 { return m.GetCounter().GetValue() })
}

// gaugeSum adds up every series of a gauge in reg.
func gaugeSum(reg *prometheus.Registry, name string) float64 {
	return metricSum(reg, name, func(m *dto.Metric) float64 { return m.GetGauge().GetValue() })
}

// metricSum adds up value of every series of metric name in reg.
func metricSum(reg *prometheus.Registry, name string, value func(*dto.Metric) float64) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return math.NaN()
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += value(m)
		}
	}
	return sum
}
