package slack

import (
	"fmt"
	"strconv"
	"strings"
	"text/template"

	goslack "github.com/slack-go/slack"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/event"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/notify/tmpl"
)

// Action IDs of the message's buttons. The value of a go/no-go button is the
// incident number.
const (
	ActionApprove         = "guardian_approve"
	ActionHold            = "guardian_hold"
	ActionApproveDatabase = "guardian_approve_database"
	ActionHoldDatabase    = "guardian_hold_database"
	// actionLink prefixes the link buttons' IDs: Slack reports their
	// clicks too, and the endpoint only acknowledges them.
	actionLink = "guardian_link_"
	// blockDecision is the block holding the go/no-go buttons.
	blockDecision = "guardian_decision"
)

// Slack's limits on what a block holds.
const (
	maxHeader  = 150
	maxSection = 3000
	maxField   = 2000
	maxContext = 2000
	maxReply   = 3000
)

// defaultTitles are the header per event type: one line, plain text.
var defaultTitles = map[event.Type]string{
	event.IncidentDeclared:    `:rotating_light: Incident {{.Incident}}: {{.Service}} {{.Data.version}} is unhealthy`,
	event.TriggerFired:        `:rotating_light: Incident {{.Incident}}: another trigger fired for {{.Service}} {{.Data.version}}`,
	event.ApprovalRequested:   `:raising_hand: Incident {{.Incident}}: go/no-go wanted{{if eq .State "db_awaiting_approval"}} for the database step{{end}} ({{.Service}} {{.Data.version}})`,
	event.ApprovalGranted:     `:white_check_mark: Incident {{.Incident}}: rollback of {{.Service}} approved`,
	event.ApprovalDenied:      `:no_entry: Incident {{.Incident}}: {{.Service}} held (no-go)`,
	event.RollbackStarted:     `:rewind: Incident {{.Incident}}: rolling {{.Service}} back to {{.Data.baseline}}`,
	event.RollbackResumed:     `:rewind: Incident {{.Incident}}: rollback of {{.Service}} resumed after a restart`,
	event.RollbackSucceeded:   `:mag: Incident {{.Incident}}: {{.Service}} rolled back, verifying recovery`,
	event.RollbackFailed:      `:x: Incident {{.Incident}}: rollback of {{.Service}} failed`,
	event.RollbackUnknown:     `:grey_question: Incident {{.Incident}}: rollback of {{.Service}} ended without an outcome`,
	event.RecoveryProgress:    `:mag: Incident {{.Incident}}: {{.Service}} recovering`,
	event.RecoveryConfirmed:   `:green_heart: Incident {{.Incident}}: {{.Service}} recovered`,
	event.RecoveryFailed:      `:x: Incident {{.Incident}}: {{.Service}} did not recover`,
	event.IncidentEscalated:   `:sos: Incident {{.Incident}}: {{.Service}} escalated, a human must take over`,
	event.IncidentResolved:    `:white_check_mark: Incident {{.Incident}}: {{.Service}} resolved`,
	event.IncidentClosed:      `:lock: Incident {{.Incident}}: {{.Service}} closed`,
	event.ReportWritten:       `:page_facing_up: Incident {{.Incident}}: {{.Service}} report written`,
	event.PostmortemScheduled: `:calendar: Incident {{.Incident}}: {{.Service}} post-mortem scheduled`,
	event.SourceUnreachable:   `:warning: Metric source {{.Data.source}} is unreachable`,
	event.SourceRecovered:     `:white_check_mark: Metric source {{.Data.source}} answers again`,
	event.ShadowDecision:      `:ghost: Incident {{.Incident}}: [shadow] would roll back {{.Service}} {{.Data.version}} → {{.Data.baseline}}`,
}

// fallbackTitle is the header of an event type Guardian does not know yet.
const fallbackTitle = `Incident {{.Incident}}: {{.Service}} {{.Type}}`

// defaultText is the body: what happened, the evidence and, while a
// go/no-go is wanted, the proposed action.
const defaultText = `{{.Text}}
{{- if and .Data.evidence (ne .Incident 0)}}
*Evidence:* {{.Data.evidence}}{{end}}
{{- if eq .State "awaiting_approval"}}
*Proposed:* roll {{.Service}} back from {{.Data.version}} to {{.Data.baseline}}.{{end}}
{{- if eq .State "db_awaiting_approval"}}
*Proposed:* run the database rollback step of {{.Service}}.{{end}}`

// templates renders an event's header and body.
type templates struct {
	title map[event.Type]*template.Template
	// customTitle and text, when set, replace the defaults for every type.
	customTitle *template.Template
	text        *template.Template
}

var builtin = func() map[event.Type]*template.Template {
	m := map[event.Type]*template.Template{}
	for t, s := range defaultTitles {
		m[t] = tmpl.Must(string(t), s)
	}
	return m
}()

var (
	builtinFallback = tmpl.Must("title", fallbackTitle)
	builtinText     = tmpl.Must("text", defaultText)
)

func newTemplates(t config.Templates) (*templates, error) {
	out := &templates{title: builtin, text: builtinText}
	if t.Title != "" {
		p, err := tmpl.Parse("title", t.Title)
		if err != nil {
			return nil, fmt.Errorf("templates.title: %w", err)
		}
		out.customTitle = p
	}
	if t.Text != "" {
		p, err := tmpl.Parse("text", t.Text)
		if err != nil {
			return nil, fmt.Errorf("templates.text: %w", err)
		}
		out.text = p
	}
	return out, nil
}

func (t *templates) render(e notify.Event) (title, text string, err error) {
	tt := t.customTitle
	if tt == nil {
		if tt = t.title[e.Type]; tt == nil {
			tt = builtinFallback
		}
	}
	// A configured template that fails on this event falls back to the
	// default: the message must still go out.
	if title, err = tmpl.Execute(tt, e); err != nil && t.customTitle != nil {
		if tt = t.title[e.Type]; tt == nil {
			tt = builtinFallback
		}
		title, err = tmpl.Execute(tt, e)
	}
	if err != nil {
		return "", "", err
	}
	if text, err = tmpl.Execute(t.text, e); err != nil && t.text != builtinText {
		text, err = tmpl.Execute(builtinText, e)
	}
	if err != nil {
		return "", "", err
	}
	title = strings.Join(strings.Fields(title), " ") // one line
	if e.Mode == string(incident.ModeShadow) && !strings.Contains(title, "[shadow]") {
		// Guardian does not act on the incident: every header says so.
		title = "[shadow] " + title
	}
	return tmpl.Truncate(maxHeader, title), tmpl.Truncate(maxSection, text), nil
}

// Message is what the incident's message shows after an event: the blocks
// and the plain-text fallback Slack shows in notifications.
type Message struct {
	Blocks []goslack.Block
	Text   string
}

// pendingStep returns the step whose go/no-go the incident awaits after
// e, or "".
func pendingStep(e notify.Event) string {
	switch incident.State(e.State) {
	case incident.AwaitingApproval:
		return "application"
	case incident.DBAwaitingApproval:
		return "database"
	}
	return ""
}

// render builds the message for e; interactive adds the go/no-go buttons
// while a decision is pending.
func (t *templates) message(e notify.Event, interactive bool) (Message, error) {
	title, text, err := t.render(e)
	if err != nil {
		return Message{}, err
	}
	var blocks []goslack.Block
	if title != "" {
		blocks = append(blocks, goslack.NewHeaderBlock(goslack.NewTextBlockObject(goslack.PlainTextType, title, true, false)))
	}
	var body *goslack.TextBlockObject
	if text != "" {
		body = goslack.NewTextBlockObject(goslack.MarkdownType, text, false, false)
	}
	fields := eventFields(e)
	if body != nil || len(fields) > 0 {
		blocks = append(blocks, goslack.NewSectionBlock(body, fields, nil))
	}
	if ctx := responders(e.Responders); ctx != "" {
		blocks = append(blocks, goslack.NewContextBlock("guardian_responders",
			goslack.NewTextBlockObject(goslack.MarkdownType, tmpl.Truncate(maxContext, ctx), false, false)))
	}
	if interactive && e.Incident > 0 {
		if b := decisionButtons(e); b != nil {
			blocks = append(blocks, b)
		}
	}
	if b := linkButtons(e.Links); b != nil {
		blocks = append(blocks, b)
	}
	fallback := title
	if fallback == "" {
		fallback = tmpl.Truncate(maxReply, text)
	}
	return Message{Blocks: blocks, Text: fallback}, nil
}

// reply is the thread reply telling one transition.
func (t *templates) reply(e notify.Event) (string, error) {
	title, text, err := t.render(e)
	if err != nil {
		return "", err
	}
	s := "*" + title + "*"
	if title == "" {
		s = ""
	}
	if text != "" {
		s = strings.TrimSpace(s + "\n" + text)
	}
	return tmpl.Truncate(maxReply, s), nil
}

func eventFields(e notify.Event) []*goslack.TextBlockObject {
	if e.Incident == 0 {
		return nil
	}
	field := func(name, value string) *goslack.TextBlockObject {
		return goslack.NewTextBlockObject(goslack.MarkdownType, tmpl.Truncate(maxField, "*"+name+"*\n"+value), false, false)
	}
	version := str(e.Data["version"])
	if b := str(e.Data["baseline"]); b != "" {
		version += " → " + b
	}
	var out []*goslack.TextBlockObject
	out = append(out, field("Service", e.Service))
	if version != "" {
		out = append(out, field("Version", version))
	}
	out = append(out, field("State", strings.ReplaceAll(e.State, "_", " ")))
	if e.Severity != "" {
		out = append(out, field("Severity", e.Severity))
	}
	return out
}

func str(v any) string {
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// Mention returns how a message mentions a Slack user (<@U0123>) or user
// group (<!subteam^S0123>).
func Mention(id string) string {
	if strings.HasPrefix(id, "S") {
		return "<!subteam^" + id + ">"
	}
	return "<@" + id + ">"
}

// responders names the service's people, mentioning those with a Slack ID.
func responders(rs []notify.Responder) string {
	var parts []string
	for _, r := range rs {
		who := escape(r.Name)
		if r.Slack != "" {
			who = Mention(r.Slack)
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", who, escape(strings.ReplaceAll(r.Role, "_", " "))))
	}
	if len(parts) == 0 {
		return ""
	}
	return "*Responders:* " + strings.Join(parts, ", ")
}

// escape keeps text from the configuration from being read as Slack markup
// (a name such as "<!channel>").
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func decisionButtons(e notify.Event) *goslack.ActionBlock {
	id := strconv.FormatInt(e.Incident, 10)
	baseline := str(e.Data["baseline"])
	switch pendingStep(e) {
	case "application":
		approve := goslack.NewButtonBlockElement(ActionApprove, id, goslack.NewTextBlockObject(goslack.PlainTextType, "Approve rollback", false, false))
		approve.Style = goslack.StylePrimary
		approve.Confirm = goslack.NewConfirmationBlockObject(
			goslack.NewTextBlockObject(goslack.PlainTextType, "Roll back?", false, false),
			goslack.NewTextBlockObject(goslack.MarkdownType, tmpl.Truncate(300, fmt.Sprintf("Roll %s back to %s now?", escape(e.Service), escape(baseline))), false, false),
			goslack.NewTextBlockObject(goslack.PlainTextType, "Roll back", false, false),
			goslack.NewTextBlockObject(goslack.PlainTextType, "Cancel", false, false))
		hold := goslack.NewButtonBlockElement(ActionHold, id, goslack.NewTextBlockObject(goslack.PlainTextType, "Hold", false, false))
		hold.Style = goslack.StyleDanger
		return goslack.NewActionBlock(blockDecision, approve, hold)
	case "database":
		approve := goslack.NewButtonBlockElement(ActionApproveDatabase, id, goslack.NewTextBlockObject(goslack.PlainTextType, "Approve database step", false, false))
		approve.Style = goslack.StylePrimary
		approve.Confirm = goslack.NewConfirmationBlockObject(
			goslack.NewTextBlockObject(goslack.PlainTextType, "Database rollback?", false, false),
			goslack.NewTextBlockObject(goslack.MarkdownType, tmpl.Truncate(300, fmt.Sprintf("Run the database rollback step of %s now?", escape(e.Service))), false, false),
			goslack.NewTextBlockObject(goslack.PlainTextType, "Run it", false, false),
			goslack.NewTextBlockObject(goslack.PlainTextType, "Cancel", false, false))
		hold := goslack.NewButtonBlockElement(ActionHoldDatabase, id, goslack.NewTextBlockObject(goslack.PlainTextType, "Hold (escalate)", false, false))
		hold.Style = goslack.StyleDanger
		return goslack.NewActionBlock(blockDecision, approve, hold)
	}
	return nil
}

func linkButtons(l notify.Links) *goslack.ActionBlock {
	var els []goslack.BlockElement
	for _, b := range []struct{ id, label, url string }{
		{"incident", "Incident", l.Incident}, {"report", "Report", l.Report}, {"status", "Status", l.Status},
	} {
		if b.url == "" {
			continue
		}
		el := goslack.NewButtonBlockElement(actionLink+b.id, "", goslack.NewTextBlockObject(goslack.PlainTextType, b.label, false, false))
		el.URL = b.url
		els = append(els, el)
	}
	if len(els) == 0 {
		return nil
	}
	return goslack.NewActionBlock("guardian_links", els...)
}
