package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/web"
)

// clientFlags are the API client's settings for approve, deny, incidents and report.
type clientFlags struct {
	url       string
	tokenFile string
	caFile    string
	timeout   time.Duration
}

func (c *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.url, "url", defaultAPIURL(), "Guardian's API address (env GUARDIAN_URL)")
	cmd.Flags().StringVar(&c.tokenFile, "token-file", os.Getenv("GUARDIAN_TOKEN_FILE"),
		"file holding the bearer token (env GUARDIAN_TOKEN_FILE; or the token itself in GUARDIAN_TOKEN)")
	cmd.Flags().StringVar(&c.caFile, "ca-file", os.Getenv("GUARDIAN_CA_FILE"),
		"PEM file of the CA that signed Guardian's TLS certificate (env GUARDIAN_CA_FILE); the system's CAs otherwise")
	cmd.Flags().DurationVar(&c.timeout, "timeout", 30*time.Second, "request timeout")
}

// client returns the HTTP client: the default one, or one trusting the CA
// of --ca-file.
func (c *clientFlags) client() (*http.Client, error) {
	if c.caFile == "" {
		return http.DefaultClient, nil
	}
	b, err := os.ReadFile(c.caFile)
	if err != nil {
		return nil, fmt.Errorf("reading --ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate", c.caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}

func (c *clientFlags) token() (string, error) {
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return "", fmt.Errorf("reading token: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := os.Getenv("GUARDIAN_TOKEN"); t != "" {
		return t, nil
	}
	return "", errNoToken
}

// errNoToken: no token is configured.
var errNoToken = errors.New("a token is required: --token-file, GUARDIAN_TOKEN_FILE or GUARDIAN_TOKEN")

// do calls the API and decodes a JSON answer into out (raw bytes when out is
// *[]byte). A request that needs auth fails without a token; any other
// sends the token when one is given (Guardian may want it for reads:
// --web.read-auth).
func (c *clientFlags) do(ctx context.Context, method, path string, body any, auth bool, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.url, "/")+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", web.CLIUserAgent+cmp.Or(version, "dev"))
	switch tok, err := c.token(); {
	case err == nil:
		req.Header.Set("Authorization", "Bearer "+tok)
	case auth || !errors.Is(err, errNoToken):
		return err
	}
	client, err := c.client()
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("calling Guardian at %s: %w", c.url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = b
		return nil
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("incident id %q: want a positive number", s)
	}
	return id, nil
}

func newDecisionCmd(stdout io.Writer, approve bool) *cobra.Command {
	if approve {
		return newIncidentActionCmd(stdout, "approve", "Give the go for an incident's rollback (or its database step)", "", false)
	}
	return newIncidentActionCmd(stdout, "deny", "Give the no-go: the incident is held, watching goes on", "", true)
}

func newCloseCmd(stdout io.Writer) *cobra.Command {
	return newIncidentActionCmd(stdout, "close", "Close an incident without resolution (fixed forward, rolled back by hand, superseded...)",
		"Close an incident that Guardian cannot finish by itself: held, escalated, failed, or waiting for a go/no-go.\n"+
			"An incident whose rollback step is running cannot be closed until the step ends.", true)
}

// newIncidentActionCmd is a command that POSTs /api/v1/incidents/ID/verb
// with a reason (required when needReason) and prints the incident's state.
func newIncidentActionCmd(stdout io.Writer, verb, short, long string, needReason bool) *cobra.Command {
	var (
		cf     clientFlags
		reason string
	)
	cmd := &cobra.Command{
		Use: verb + " ID", Short: short, Long: long, Args: args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			if needReason && reason == "" {
				return fmt.Errorf("--reason is required with %s", verb)
			}
			var rec incident.Record
			if err := cf.do(cmd.Context(), "POST", fmt.Sprintf("/api/v1/incidents/%d/%s", id, verb), map[string]string{"reason": reason}, true, &rec); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "incident #%d (%s): %s\n", rec.ID, rec.Service, rec.State)
			return nil
		},
	}
	cf.register(cmd)
	help := "why"
	if needReason {
		help = "why (required)"
	}
	cmd.Flags().StringVar(&reason, "reason", "", help)
	return cmd
}

func newRollbackCmd(stdout io.Writer) *cobra.Command {
	var (
		cf         clientFlags
		to, reason string
	)
	cmd := &cobra.Command{
		Use:   "rollback SERVICE --reason TEXT [--to VERSION]",
		Short: "Roll a service back now, for a reason no metric shows",
		Long: "Declare an incident for SERVICE with you as its source and your reason (data corruption, an outage seen\n" +
			"elsewhere...): the request is the go for the application rollback, which runs through the service's executor,\n" +
			"then recovery is verified and the report written, as for a detected incident. Without --to the service goes back\n" +
			"to the baseline of its open watch; with no watch open, --to is required. Needs a token with the approve scope.",
		Example: `  guardian rollback checkout --reason "orders are written twice since 14:02"
  guardian rollback checkout --to v2.4.0 --reason "the payment provider rejects v2.4.1's requests"`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return errors.New("--reason is required: say why, for the timeline and the report")
			}
			var rec incident.Record
			body := map[string]string{"reason": reason}
			if to != "" {
				body["to"] = to
			}
			if err := cf.do(cmd.Context(), "POST", "/api/v1/services/"+url.PathEscape(args[0])+"/rollback", body, true, &rec); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "incident #%d (%s): %s, rolling back %s → %s\n", rec.ID, rec.Service, rec.State, rec.Version, rec.Baseline)
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why (required)")
	cmd.Flags().StringVar(&to, "to", "", "the version to roll back to (default: the baseline of the open watch)")
	return cmd
}

// preventedSpan is how far back `guardian incidents` and the console sum up
// the bad deploys stopped.
const preventedSpan = 30 * 24 * time.Hour

func newIncidentsCmd(stdout io.Writer) *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "incidents",
		Short: "List incidents (newest first)",
		Args:  args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var recs []incident.Record
			if err := cf.do(cmd.Context(), "GET", "/api/v1/incidents", nil, false, &recs); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSERVICE\tSEVERITY\tSTATE\tVERSION\tBASELINE\tDETECTED\tTRIGGER")
			for _, r := range recs {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Service, r.Severity, r.State, r.Version, r.Baseline,
					r.DetectedAt.UTC().Format(time.RFC3339), r.Trigger)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			_, err := fmt.Fprintf(stdout, "\n%s\n", incident.Prevented(recs, time.Now(), preventedSpan))
			return err
		},
	}
	cf.register(cmd)
	var scf clientFlags
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one incident: state, evidence, decisions and timeline",
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			var r incident.Record
			if err := scf.do(cmd.Context(), "GET", fmt.Sprintf("/api/v1/incidents/%d", id), nil, false, &r); err != nil {
				return err
			}
			printIncident(stdout, r)
			return nil
		},
	}
	scf.register(show)
	cmd.AddCommand(show)
	return cmd
}

func printIncident(w io.Writer, r incident.Record) {
	fmt.Fprintf(w, "Incident #%d  %s  %s  %s\n", r.ID, r.Severity, r.Service, r.State)
	fmt.Fprintf(w, "  version %s, baseline %s; deployed %s, detected %s\n", r.Version, r.Baseline,
		r.DeployedAt.UTC().Format(time.RFC3339), r.DetectedAt.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "  evidence: %s\n", r.Evidence.Summary)
	for _, d := range r.Decisions {
		verdict := "no-go"
		if d.Approved {
			verdict = "go"
		}
		via := ""
		if d.Channel != "" {
			via = " via " + d.Channel
		}
		fmt.Fprintf(w, "  %s for the %s step by %s%s at %s %s\n", verdict, d.Step, d.By, via, d.At.UTC().Format(time.RFC3339), d.Reason)
	}
	fmt.Fprintln(w, "Timeline:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, e := range r.Timeline {
		msg := e.Message
		if e.Count > 1 {
			msg += fmt.Sprintf(" (%d times)", e.Count)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", e.At.UTC().Format("15:04:05.000"), e.Type, e.Actor, msg)
	}
	_ = tw.Flush()
}

func newReportCmd(stdout io.Writer) *cobra.Command {
	var (
		cf     clientFlags
		format string
	)
	cmd := &cobra.Command{
		Use:   "report ID",
		Short: "Print an incident's report (Markdown, JSON or HTML)",
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID(args[0])
			if err != nil {
				return err
			}
			var b []byte
			if err := cf.do(cmd.Context(), "GET", fmt.Sprintf("/api/v1/incidents/%d/report?format=%s", id, format), nil, false, &b); err != nil {
				return err
			}
			_, err = stdout.Write(b)
			return err
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&format, "format", "markdown", "markdown, json or html (a self-contained page with charts: guardian report N --format html > incident-N.html)")
	return cmd
}
