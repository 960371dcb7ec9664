package slack

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"strings"
	"time"

	goslack "github.com/slack-go/slack"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/config"
)

// Usage is the slash command's help.
const Usage = "Usage:\n" +
	"• `/guardian rollback SERVICE [--to VERSION] --reason \"why\"`: roll SERVICE back now (to its baseline, or to VERSION)\n" +
	"• `/guardian status [SERVICE]`: where SERVICE's incidents stand"

// Command is a parsed /guardian command.
type Command struct {
	// Verb is "rollback", "status" or "help".
	Verb    string
	Service string
	To      string
	Reason  string
}

// ParseCommand reads the text of a /guardian command. Words may be quoted
// with straight or typographic quotes (Slack's clients often turn " into
// “ ”), and the text's HTML entities (&amp; &lt; &gt;, as Slack escapes
// them) are decoded.
func ParseCommand(text string) (Command, error) {
	words, err := split(html.UnescapeString(text))
	if err != nil {
		return Command{}, err
	}
	if len(words) == 0 {
		return Command{Verb: "help"}, nil
	}
	c := Command{Verb: strings.ToLower(words[0])}
	rest := words[1:]
	switch c.Verb {
	case "help":
		return c, nil
	case "status":
		if len(rest) > 1 {
			return Command{}, errors.New("status takes at most one service")
		}
		if len(rest) == 1 {
			c.Service = rest[0]
		}
		return c, nil
	case "rollback":
	default:
		return Command{}, fmt.Errorf("unknown command %q", words[0])
	}
	for i := 0; i < len(rest); i++ {
		w := rest[i]
		flag, value, hasValue := strings.Cut(w, "=")
		switch flag {
		case "--to", "--reason", "—to", "—reason": // Slack may turn -- into an em dash
			if !hasValue {
				if i+1 >= len(rest) {
					return Command{}, fmt.Errorf("%s needs a value", w)
				}
				i++
				value = rest[i]
			}
			if strings.HasSuffix(flag, "to") {
				c.To = value
			} else {
				c.Reason = value
			}
		default:
			if strings.HasPrefix(w, "-") || strings.HasPrefix(w, "—") {
				return Command{}, fmt.Errorf("unknown option %q", w)
			}
			if c.Service != "" {
				return Command{}, fmt.Errorf("unexpected %q: quote the reason (--reason \"...\")", w)
			}
			c.Service = w
		}
	}
	switch {
	case c.Service == "":
		return Command{}, errors.New("rollback needs a service")
	case strings.TrimSpace(c.Reason) == "":
		return Command{}, errors.New("rollback needs a reason (--reason \"...\")")
	case len(c.Reason) > approval.MaxReason:
		return Command{}, fmt.Errorf("the reason is longer than %d characters", approval.MaxReason)
	}
	return c, nil
}

// split cuts text into words, keeping quoted runs together.
func split(text string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune // the closing quote awaited, or 0
	)
	closing := map[rune]rune{'"': '"', '\'': '\'', '“': '”', '”': '”', '‘': '’', '’': '’'}
	for _, r := range text {
		switch {
		case quote != 0:
			if r == quote || (quote == '”' && r == '“') {
				quote = 0
				continue
			}
			cur.WriteRune(r)
		case closing[r] != 0:
			quote, in = closing[r], true
		case r == ' ' || r == '\t' || r == '\n' || r == '\u00a0':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unclosed quote")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

func (h *Handler) command(w http.ResponseWriter, ctx context.Context, cfg *config.Config, a app, sc goslack.SlashCommand) {
	log := h.log.With(zap.String("user", sc.UserID), zap.String("user_name", sc.UserName), zap.String("command", sc.Command),
		zap.String("notifier", a.name))
	answer := func(result, text string, inChannel bool) {
		h.count(result)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_ = jsonEncode(w, reply(text, inChannel))
	}
	c, err := ParseCommand(sc.Text)
	if err != nil {
		answer(ResultInvalid, err.Error()+"\n"+Usage, false)
		return
	}
	switch c.Verb {
	case "help":
		answer(ResultIgnored, Usage, false)
	case "status":
		answer(ResultStatus, h.status(ctx, cfg, c.Service), false)
	case "rollback":
		rb, ok := h.opts.Incidents.(Rollbacker)
		if !ok {
			answer(ResultUnavailable, "Rolling back from Slack is not available in this Guardian.", false)
			return
		}
		if ok, why := h.allowed(ctx, cfg, a, c.Service, sc.UserID); !ok {
			log.Warn("Slack rollback refused: user not allowed", zap.String("service", c.Service), zap.String("reason", why))
			answer(ResultNotAllowed, fmt.Sprintf(":no_entry: You are not allowed to roll %s back (%s). Nothing changed.", escape(c.Service), why), false)
			return
		}
		by := identity(sc.UserID, sc.UserName)
		rec, err := rb.Rollback(ctx, c.Service, c.To, c.Reason, by, approval.ChannelSlack)
		if err != nil {
			log.Warn("Slack rollback failed", zap.String("service", c.Service), zap.Error(err))
			answer(ResultError, fmt.Sprintf("Guardian did not roll %s back: %s", escape(c.Service), escape(err.Error())), false)
			return
		}
		log.Info("rollback requested in Slack", zap.String("service", c.Service), zap.String("to", c.To), zap.Int64("incident", rec.ID))
		answer(ResultRollback, fmt.Sprintf(":rewind: %s asked to roll %s back to %s: incident %d, %s. Reason: %s",
			Mention(sc.UserID), escape(c.Service), escape(cmp.Or(rec.Baseline, c.To, "its baseline")), rec.ID,
			strings.ReplaceAll(rec.State.String(), "_", " "), escape(c.Reason)), true)
	}
}

// status tells the open incidents of service (of every service when "").
func (h *Handler) status(ctx context.Context, cfg *config.Config, service string) string {
	if service != "" && !configured(cfg, service) {
		return fmt.Sprintf("No service %q is configured.", service)
	}
	recs, err := h.opts.Incidents.List(ctx)
	if err != nil {
		return "Guardian could not list its incidents: " + err.Error()
	}
	var lines []string
	for _, r := range recs {
		if (service != "" && r.Service != service) || !r.State.Open() {
			continue
		}
		lines = append(lines, fmt.Sprintf("• incident %d: %s %s → %s, %s since %s", r.ID, escape(r.Service), escape(r.Version),
			escape(r.Baseline), strings.ReplaceAll(r.State.String(), "_", " "), r.DetectedAt.UTC().Format(time.RFC3339)))
	}
	what := "any service"
	if service != "" {
		what = escape(service)
	}
	if len(lines) == 0 {
		return fmt.Sprintf("No open incident for %s.", what)
	}
	return fmt.Sprintf("Open incidents for %s:\n%s", what, strings.Join(lines, "\n"))
}

func configured(cfg *config.Config, service string) bool {
	for _, s := range cfg.Services {
		if s.Name == service {
			return true
		}
	}
	return false
}

func jsonEncode(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }
