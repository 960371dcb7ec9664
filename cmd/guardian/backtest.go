package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/backtest"
	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/source/prometheus"
)

const backtestLong = `Replay a service's history from its Prometheus source through Guardian's deploy detection
and triggers, and tell which deploys Guardian would have rolled back, when, and why.

The deploys are found from the service's deploy.version_query, run as range queries at
global.evaluation_interval and fed tick by tick to the deploy detector. Each deploy is then
judged by the daemon's own triggers and watch, tick by tick over its watch window (or until the
next deploy), with instant queries at past times. Nothing is rolled back and nobody is told.

--set TRIGGER.FIELD=VALUE (above, below or for; repeatable) or --compare OTHER.yaml judges the
same deploys a second time with changed triggers, side by side with the configuration.
--concurrency and --rate hold the queries to a budget, so a backtest cannot overload Prometheus.
Progress goes to stderr, the result to stdout.`

type backtestFlags struct {
	configFile, service, from, to, last, format, compare string
	set                                                  []string
	concurrency                                          int
	rate                                                 float64
}

func newBacktestCmd(stdout, stderr io.Writer) *cobra.Command {
	var f backtestFlags
	cmd := &cobra.Command{
		Use:           "backtest --service NAME (--last 30d | --from T1 --to T2)",
		Short:         "Replay a service's Prometheus history: which deploys would Guardian have rolled back?",
		Long:          backtestLong,
		Args:          args(0, 0),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runBacktest(ctx, f, time.Now(), stdout, stderr)
		},
	}
	fl := cmd.Flags()
	configFlag(cmd, &f.configFile, "configuration file")
	fl.StringVar(&f.service, "service", "", "the service to backtest (required)")
	fl.StringVar(&f.from, "from", "", "start of the history: RFC 3339 (2026-11-02T15:04:05Z) or Unix seconds")
	fl.StringVar(&f.to, "to", "", "end of the history (default now)")
	fl.StringVar(&f.last, "last", "", "the history of the last DURATION, e.g. 30d or 6h (instead of --from)")
	fl.StringVar(&f.format, "format", "text", "output: text or json")
	fl.StringArrayVar(&f.set, "set", nil, "judge again with TRIGGER.FIELD=VALUE (above, below or for); repeatable")
	fl.StringVar(&f.compare, "compare", "", "judge again with the service's triggers in this configuration file")
	fl.IntVar(&f.concurrency, "concurrency", 2, "queries in flight at most")
	fl.Float64Var(&f.rate, "rate", 20, "queries a second at most (0: no limit)")
	return cmd
}

// parseTime reads RFC 3339 or Unix seconds.
func parseTime(flag, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.UnixMilli(int64(f * 1000)), nil
	}
	return time.Time{}, fmt.Errorf("--%s %q: want RFC 3339 (2026-11-02T15:04:05Z) or Unix seconds", flag, s)
}

func (f backtestFlags) options(now time.Time) (backtest.Options, error) {
	var o backtest.Options
	switch {
	case f.service == "":
		return o, fmt.Errorf("--service is required")
	case f.format != "text" && f.format != "json":
		return o, fmt.Errorf("--format %q: want text or json", f.format)
	case f.last != "" && f.from != "":
		return o, fmt.Errorf("--last and --from both give the start: use one")
	case f.last == "" && f.from == "":
		return o, fmt.Errorf("say which history: --last 30d, or --from T1 [--to T2]")
	case f.concurrency < 1:
		return o, fmt.Errorf("--concurrency must be at least 1")
	case f.rate < 0:
		return o, fmt.Errorf("--rate must not be negative")
	case f.compare != "" && len(f.set) > 0:
		return o, fmt.Errorf("--compare and --set both change the triggers: use one")
	}
	o.To = now
	if f.to != "" {
		t, err := parseTime("to", f.to)
		if err != nil {
			return o, err
		}
		o.To = t
	}
	if f.last != "" {
		d, err := model.ParseDuration(f.last)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("--last %q: want a duration such as 30d or 6h", f.last)
		}
		o.From = o.To.Add(-time.Duration(d))
	} else {
		t, err := parseTime("from", f.from)
		if err != nil {
			return o, err
		}
		o.From = t
	}
	cfg, _, err := config.LoadFile(f.configFile)
	if err != nil {
		return o, err
	}
	i := slices.IndexFunc(cfg.Services, func(s config.Service) bool { return s.Name == f.service })
	if i < 0 {
		return o, fmt.Errorf("%s has no service %q", f.configFile, f.service)
	}
	svc := cfg.Services[i]
	if svc.Source == "" {
		return o, fmt.Errorf("service %s uses the embedded source, which keeps no history to replay: backtest needs a prometheus source", svc.Name)
	}
	si := slices.IndexFunc(cfg.Sources, func(s config.Source) bool { return s.Name == svc.Source })
	if si < 0 || cfg.Sources[si].Prometheus == nil {
		return o, fmt.Errorf("service %s: source %q is not a prometheus source", svc.Name, svc.Source)
	}
	q, err := prometheus.New(*cfg.Sources[si].Prometheus, zap.NewNop())
	if err != nil {
		return o, err
	}
	o.Service, o.Querier = svc, q
	o.Interval = time.Duration(cfg.Global.EvaluationInterval)
	o.Concurrency, o.Rate = f.concurrency, f.rate
	// Ticks fall on multiples of the interval, as range query steps do.
	o.From = o.From.Truncate(o.Interval)
	o.Variants = []backtest.Variant{{Name: "configured", Triggers: svc.Triggers}}
	switch {
	case len(f.set) > 0:
		var settings []backtest.Setting
		for _, s := range f.set {
			st, err := backtest.ParseSetting(s)
			if err != nil {
				return o, fmt.Errorf("--set: %w", err)
			}
			settings = append(settings, st)
		}
		ts, err := backtest.Apply(svc.Triggers, settings)
		if err != nil {
			return o, fmt.Errorf("--set: %w", err)
		}
		names := make([]string, len(settings))
		for i, s := range settings {
			names[i] = s.String()
		}
		o.Variants = append(o.Variants, backtest.Variant{Name: strings.Join(names, " "), Triggers: ts})
	case f.compare != "":
		other, _, err := config.LoadFile(f.compare)
		if err != nil {
			return o, fmt.Errorf("--compare: %w", err)
		}
		j := slices.IndexFunc(other.Services, func(s config.Service) bool { return s.Name == f.service })
		if j < 0 {
			return o, fmt.Errorf("--compare: %s has no service %q", f.compare, f.service)
		}
		o.Variants = append(o.Variants, backtest.Variant{Name: filepath.Base(f.compare), Triggers: other.Services[j].Triggers})
	}
	return o, nil
}

func runBacktest(ctx context.Context, f backtestFlags, now time.Time, stdout, stderr io.Writer) error {
	o, err := f.options(now)
	if err != nil {
		return err
	}
	defer func() { _ = o.Querier.(*prometheus.Querier).Close() }()
	fmt.Fprintf(stderr, "backtest %s from %s to %s every %s (at most %d queries in flight, %g/s)\n",
		o.Service.Name, o.From.UTC().Format(time.RFC3339), o.To.UTC().Format(time.RFC3339), o.Interval, o.Concurrency, o.Rate)
	o.Progress = func(p backtest.Progress) {
		j := p.Deploy.Judgements[0]
		fmt.Fprintf(stderr, "[%d/%d deploys, %d/%d ticks, %d queries, %s] %s %s: %s\n",
			p.DeploysDone, p.Deploys, p.TicksDone, p.Ticks, p.Queries, p.Elapsed.Round(time.Millisecond),
			p.Deploy.At.UTC().Format(time.RFC3339), p.Deploy.Version, j.Verdict)
	}
	rep, err := backtest.Run(ctx, o)
	if err != nil {
		return err
	}
	if f.format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return writeBacktest(stdout, rep)
}

// writeBacktest prints a report as text: a row per deploy with a verdict
// column per variant, the evidence under it, then the summary.
func writeBacktest(w io.Writer, rep *backtest.Report) error {
	fmt.Fprintf(w, "Backtest of %s, %s to %s, every %s: %d deploys\n\n", rep.Service,
		rep.From.UTC().Format(time.RFC3339), rep.To.UTC().Format(time.RFC3339), rep.Interval, len(rep.Deploys))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "DEPLOYED\tVERSION\tBASELINE"
	for _, v := range rep.Variants {
		head += "\t" + strings.ToUpper(v)
	}
	fmt.Fprintln(tw, head)
	for _, d := range rep.Deploys {
		row := d.At.UTC().Format(time.RFC3339) + "\t" + d.Version + "\t" + or(d.Baseline, "-")
		for _, j := range d.Judgements {
			row += "\t" + verdictCell(j)
		}
		if d.Cut {
			row += "\t(window cut by the range's end)"
		}
		fmt.Fprintln(tw, row)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nEvidence:")
	for _, d := range rep.Deploys {
		for i, j := range d.Judgements {
			label := ""
			if len(rep.Variants) > 1 {
				label = " [" + rep.Variants[i] + "]"
			}
			ev := or(j.Evidence, "no trigger had enough data")
			if len(j.NoData) > 0 && j.Evidence != "" {
				ev += " (never enough data: " + strings.Join(j.NoData, ", ") + ")"
			}
			if j.QueryErrors > 0 {
				ev += fmt.Sprintf(" (%d evaluations failed on a query, first: %s)", j.QueryErrors, j.Error)
			}
			fmt.Fprintf(w, "  %s %s%s: %s\n", d.At.UTC().Format("15:04:05"), d.Version, label, ev)
		}
	}
	fmt.Fprintln(w, "\nSummary:")
	for _, s := range rep.Summary {
		fmt.Fprintf(w, "  %s: %d deploys judged, %d would roll back, %d healthy, %d not enough data",
			s.Variant, s.Deploys, s.Rollbacks, s.Healthy, s.NotEnoughData)
		if s.Rollbacks > 0 {
			fmt.Fprintf(w, "; detection delay median %s, max %s", s.MedianDelay, s.MaxDelay)
		}
		if len(s.NeverJudged) > 0 {
			fmt.Fprintf(w, "; never enough data: %s", strings.Join(s.NeverJudged, ", "))
		}
		if s.QueryErrors > 0 {
			fmt.Fprintf(w, "; %d evaluations failed on a query", s.QueryErrors)
		}
		fmt.Fprintln(w)
	}
	_, err := fmt.Fprintf(w, "  %d queries, %d ticks replayed in %s\n", rep.Queries, rep.Ticks, rep.Elapsed.Round(time.Millisecond))
	return err
}

func verdictCell(j backtest.Judgement) string {
	if j.FiredAt == nil {
		return j.Verdict
	}
	return fmt.Sprintf("%s at %s (+%s, %s)", j.Verdict, j.FiredAt.UTC().Format("15:04:05"), j.Delay, j.Trigger)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
