package slack

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goslack "github.com/slack-go/slack"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/approval"
	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/incident"
)

// Incidents is what the Slack endpoint needs of Guardian's incidents: the
// same Get and Vote as the incident API's.
type Incidents interface {
	List(ctx context.Context) ([]incident.Record, error)
	Get(ctx context.Context, id int64) (incident.Record, error)
	Vote(ctx context.Context, v approval.Vote) (incident.Record, error)
}

// Rollbacker starts a rollback a person asked for. When the Incidents
// given to the handler implement it, "/guardian rollback" is served.
type Rollbacker interface {
	Rollback(ctx context.Context, service, to, reason, by, channel string) (incident.Record, error)
}

// HandlerOptions configure the Slack endpoint.
type HandlerOptions struct {
	// Config returns the configuration in force: the signing secrets, bot
	// tokens and approvers change on reload.
	Config    func() *config.Config
	Incidents Incidents
	Logger    *zap.Logger
	// Registerer receives guardian_slack_interactions_total.
	Registerer prometheus.Registerer
	// Now is the clock the request timestamps are checked against.
	Now func() time.Time
	// Client calls Slack (response_url, usergroups.users.list).
	Client *http.Client
	// GroupTTL is how long a user group's members are cached (default 1m).
	GroupTTL time.Duration
}

// Handler serves Slack's interactivity requests (button clicks) and the
// /guardian slash command, at one URL or two.
type Handler struct {
	opts   HandlerOptions
	log    *zap.Logger
	seen   seen
	total  *prometheus.CounterVec
	client *http.Client

	mu     sync.Mutex
	groups map[string]groupMembers
}

type groupMembers struct {
	users map[string]bool
	until time.Time
}

// Interaction results, the values of guardian_slack_interactions_total's
// result label.
const (
	ResultApproved       = "approved"
	ResultHeld           = "held"
	ResultAlreadyDecided = "already_decided"
	ResultNotAllowed     = "not_allowed"
	ResultBadSignature   = "bad_signature"
	ResultStale          = "stale"
	ResultReplay         = "replay"
	ResultInvalid        = "invalid"
	ResultIgnored        = "ignored"
	ResultNotFound       = "not_found"
	ResultError          = "error"
	ResultRollback       = "rollback"
	ResultStatus         = "status"
	ResultUnavailable    = "unavailable"
)

// NewHandler returns the Slack endpoint.
func NewHandler(opts HandlerOptions) (*Handler, error) {
	if opts.Config == nil || opts.Incidents == nil {
		return nil, errors.New("slack handler: Config and Incidents are required")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.GroupTTL <= 0 {
		opts.GroupTTL = time.Minute
	}
	h := &Handler{opts: opts, log: opts.Logger, groups: map[string]groupMembers{}, client: opts.Client}
	if h.client == nil {
		h.client = &http.Client{Timeout: 5 * time.Second}
	}
	h.total = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guardian_slack_interactions_total",
		Help: "Slack button clicks and slash commands received, by result (approved, held, not_allowed, bad_signature, stale, replay, ...).",
	}, []string{"result"})
	for _, r := range []string{ResultApproved, ResultHeld, ResultAlreadyDecided, ResultNotAllowed, ResultBadSignature, ResultStale, ResultReplay} {
		h.total.WithLabelValues(r)
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(h.total); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			h.total = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return h, nil
}

// app is one configured Slack notifier with interactivity.
type app struct {
	name, secret, token, apiURL string
}

func apps(cfg *config.Config) []app {
	var out []app
	if cfg == nil {
		return nil
	}
	for _, n := range cfg.Notifiers {
		if s := n.Slack; s != nil && s.SigningSecret != "" {
			out = append(out, app{name: n.Name, secret: string(s.SigningSecret), token: string(s.Token), apiURL: s.APIURL})
		}
	}
	return out
}

// ServeHTTP verifies the request, then serves a button click (a form with
// "payload") or a slash command (a form with "command").
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("request body too large: the limit is %d bytes", tooBig.Limit), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the request body failed", http.StatusBadRequest)
		return
	}
	cfg := h.opts.Config()
	as := apps(cfg)
	if len(as) == 0 {
		h.count(ResultUnavailable)
		http.Error(w, "Slack interactivity is not configured: no slack notifier has a signing_secret_file", http.StatusNotFound)
		return
	}
	secrets := make([]string, len(as))
	for i, a := range as {
		secrets[i] = a.secret
	}
	now := h.opts.Now()
	i, sig, err := verify(r.Header, body, secrets, now)
	if err == nil {
		err = h.seen.add(sig, now)
	}
	if err != nil {
		result := ResultBadSignature
		switch {
		case errors.Is(err, errStale):
			result = ResultStale
		case errors.Is(err, errReplay):
			result = ResultReplay
		case errors.Is(err, errBusy):
			result = ResultUnavailable
		}
		h.count(result)
		h.log.Warn("Slack request refused", zap.String("remote", r.RemoteAddr), zap.String("reason", err.Error()))
		if errors.Is(err, errBusy) {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		http.Error(w, "unauthorized: "+err.Error(), http.StatusUnauthorized)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		h.count(ResultInvalid)
		http.Error(w, "invalid form body", http.StatusBadRequest)
		return
	}
	switch {
	case form.Has("payload"):
		h.interaction(w, r.Context(), cfg, as[i], form.Get("payload"))
	case form.Has("command"):
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.Form, r.PostForm = nil, nil
		cmd, err := goslack.SlashCommandParse(r)
		if err != nil {
			h.count(ResultInvalid)
			http.Error(w, "invalid slash command", http.StatusBadRequest)
			return
		}
		h.command(w, r.Context(), cfg, as[i], cmd)
	default:
		h.count(ResultInvalid)
		http.Error(w, "neither an interaction payload nor a slash command", http.StatusBadRequest)
	}
}

func (h *Handler) count(result string) { h.total.WithLabelValues(result).Inc() }

// identity is how the timeline names a Slack user.
func identity(id, name string) string {
	if name == "" {
		return "slack:" + id
	}
	return fmt.Sprintf("slack:%s (%s)", id, name)
}

// click is a go/no-go button.
type click struct {
	approve bool
	step    string
}

var clicks = map[string]click{
	ActionApprove:         {true, "application"},
	ActionHold:            {false, "application"},
	ActionApproveDatabase: {true, "database"},
	ActionHoldDatabase:    {false, "database"},
}

func (h *Handler) interaction(w http.ResponseWriter, ctx context.Context, cfg *config.Config, a app, payload string) {
	var cb goslack.InteractionCallback
	if err := json.Unmarshal([]byte(payload), &cb); err != nil {
		h.count(ResultInvalid)
		http.Error(w, "invalid interaction payload", http.StatusBadRequest)
		return
	}
	var (
		act   *goslack.BlockAction
		c     click
		found bool
	)
	if cb.Type == goslack.InteractionTypeBlockActions {
		for _, ba := range cb.ActionCallback.BlockActions {
			if c, found = clicks[ba.ActionID]; found {
				act = ba
				break
			}
		}
	}
	if !found {
		// A link button, or an interaction Guardian does not use.
		h.count(ResultIgnored)
		w.WriteHeader(http.StatusOK)
		return
	}
	user, name := cb.User.ID, cmp.Or(cb.User.Name, cb.User.Username)
	log := h.log.With(zap.String("user", user), zap.String("user_name", name), zap.String("action", act.ActionID), zap.String("notifier", a.name))
	answer := func(result, text string) {
		h.count(result)
		if err := h.respond(ctx, cb.ResponseURL, text, false); err != nil {
			log.Warn("answering the Slack user failed", zap.Error(err))
		}
		w.WriteHeader(http.StatusOK)
	}
	id, err := strconv.ParseInt(act.Value, 10, 64)
	if err != nil || id <= 0 {
		h.count(ResultInvalid)
		http.Error(w, "invalid incident number", http.StatusBadRequest)
		return
	}
	log = log.With(zap.Int64("incident", id))
	rec, err := h.opts.Incidents.Get(ctx, id)
	if errors.Is(err, incident.ErrNotFound) {
		answer(ResultNotFound, fmt.Sprintf("Incident %d does not exist.", id))
		return
	} else if err != nil {
		log.Error("reading the incident failed", zap.Error(err))
		answer(ResultError, fmt.Sprintf("Guardian could not read incident %d: %s", id, err))
		return
	}
	if ok, why := h.allowed(ctx, cfg, a, rec.Service, user); !ok {
		log.Warn("Slack go/no-go refused: user not allowed", zap.String("service", rec.Service), zap.String("reason", why))
		answer(ResultNotAllowed, fmt.Sprintf(":no_entry: You are not allowed to decide on %s's rollback (%s). Nothing changed.", escape(rec.Service), why))
		return
	}
	want := incident.AwaitingApproval
	if c.step == "database" {
		want = incident.DBAwaitingApproval
	}
	if rec.State != want {
		answer(ResultAlreadyDecided, decided(rec, c.step))
		return
	}
	v := approval.Vote{Incident: id, Approve: c.approve, By: identity(user, name), Channel: approval.ChannelSlack}
	if c.approve {
		v.Reason = "approved in Slack"
	} else {
		v.Reason = "held in Slack by " + cmp.Or(name, user)
	}
	after, err := h.opts.Incidents.Vote(ctx, v)
	switch {
	case errors.Is(err, incident.ErrNoDecision), errors.Is(err, incident.ErrFinished), errors.Is(err, incident.ErrBusy):
		// Decided meanwhile, by someone else.
		if cur, gerr := h.opts.Incidents.Get(ctx, id); gerr == nil {
			rec = cur
		}
		answer(ResultAlreadyDecided, decided(rec, c.step))
		return
	case err != nil:
		log.Error("recording the Slack go/no-go failed", zap.Error(err))
		answer(ResultError, fmt.Sprintf("Guardian could not record your decision: %s", err))
		return
	}
	log.Info("go/no-go recorded", zap.Bool("approve", c.approve), zap.String("by", v.By), zap.String("channel", v.Channel),
		zap.String("state", after.State.String()))
	if c.approve {
		answer(ResultApproved, fmt.Sprintf(":white_check_mark: You approved the %s step for incident %d (%s): it is now %s.",
			c.step, id, escape(rec.Service), strings.ReplaceAll(after.State.String(), "_", " ")))
		return
	}
	answer(ResultHeld, fmt.Sprintf(":no_entry: You held incident %d (%s): it is now %s.", id, escape(rec.Service), strings.ReplaceAll(after.State.String(), "_", " ")))
}

// decided says who decided the incident's step, or where it stands.
func decided(rec incident.Record, step string) string {
	for i := len(rec.Decisions) - 1; i >= 0; i-- {
		d := rec.Decisions[i]
		if d.Step != step {
			continue
		}
		verdict := "held"
		if d.Approved {
			verdict = "approved"
		}
		return fmt.Sprintf("Incident %d was already decided: %s by %s at %s. Nothing changed; it is now %s.",
			rec.ID, verdict, escape(d.By), d.At.UTC().Format(time.RFC3339), strings.ReplaceAll(rec.State.String(), "_", " "))
	}
	return fmt.Sprintf("Incident %d is %s, not waiting for this decision. Nothing changed.", rec.ID, strings.ReplaceAll(rec.State.String(), "_", " "))
}

// allowed reports whether a Slack user may decide for service: the
// Slack app that signed the request must notify the service, and the
// user must be on its slack_approvers, directly or in a user group.
func (h *Handler) allowed(ctx context.Context, cfg *config.Config, a app, service, user string) (bool, string) {
	var svc *config.Service
	for i := range cfg.Services {
		if cfg.Services[i].Name == service {
			svc = &cfg.Services[i]
		}
	}
	switch {
	case svc == nil:
		return false, "the service is not configured"
	case user == "":
		return false, "the request names no user"
	case !slices.Contains(svc.Notify, a.name):
		return false, fmt.Sprintf("this Slack app (notifier %s) does not notify the service", a.name)
	case len(svc.Approval.SlackApprovers) == 0:
		return false, "the service has no approval.slack_approvers"
	}
	var failed []string
	for _, id := range svc.Approval.SlackApprovers {
		if id == user {
			return true, ""
		}
		if !strings.HasPrefix(id, "S") {
			continue
		}
		members, err := h.members(ctx, a, id)
		if err != nil {
			h.log.Warn("reading a Slack user group failed", zap.String("usergroup", id), zap.String("notifier", a.name), zap.Error(err))
			failed = append(failed, id)
			continue
		}
		if members[user] {
			return true, ""
		}
	}
	if len(failed) > 0 {
		return false, "you are not on approval.slack_approvers, and the members of user groups " + strings.Join(failed, ", ") + " could not be read"
	}
	return false, "you are not on the service's approval.slack_approvers"
}

// members returns a user group's members, cached for GroupTTL.
func (h *Handler) members(ctx context.Context, a app, group string) (map[string]bool, error) {
	k := a.name + "\x00" + a.apiURL + "\x00" + group
	now := h.opts.Now()
	h.mu.Lock()
	g, ok := h.groups[k]
	h.mu.Unlock()
	if ok && now.Before(g.until) {
		return g.users, nil
	}
	api, err := newClient(a.token, a.apiURL, h.client)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ids, err := api.GetUserGroupMembersContext(ctx, group)
	if err != nil {
		_, err = classify(err)
		return nil, fmt.Errorf("usergroups.users.list: %w", err)
	}
	users := make(map[string]bool, len(ids))
	for _, id := range ids {
		users[id] = true
	}
	h.mu.Lock()
	for key, g := range h.groups { // drop the expired: groups come from the configuration, few
		if !now.Before(g.until) {
			delete(h.groups, key)
		}
	}
	h.groups[k] = groupMembers{users: users, until: now.Add(h.opts.GroupTTL)}
	h.mu.Unlock()
	return users, nil
}

// respond posts an ephemeral answer (or, inChannel, one the channel sees)
// to an interaction's response_url.
func (h *Handler) respond(ctx context.Context, responseURL, text string, inChannel bool) error {
	if responseURL == "" {
		return errors.New("the payload has no response_url")
	}
	u, err := url.Parse(responseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("the payload's response_url is not an http(s) URL")
	}
	body, _ := json.Marshal(reply(text, inChannel))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("posting to response_url: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("posting to response_url: status %d", resp.StatusCode)
	}
	return nil
}

// Reply is an answer to an interaction or a slash command.
type Reply struct {
	ResponseType    string `json:"response_type"`
	ReplaceOriginal bool   `json:"replace_original"`
	Text            string `json:"text"`
}

func reply(text string, inChannel bool) Reply {
	r := Reply{ResponseType: "ephemeral", Text: text}
	if inChannel {
		r.ResponseType = "in_channel"
	}
	return r
}

// Target says what a Slack request acts on, read from its body without
// checking its signature (the replica that serves it checks it): the
// incident of a button click, or the service of a rollback command; zero
// values when it names neither. Replicas that share the services out use
// it to send the request to the replica that drives them.
func Target(body []byte) (incident int64, service string) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return 0, ""
	}
	if p := form.Get("payload"); p != "" {
		var cb goslack.InteractionCallback
		if json.Unmarshal([]byte(p), &cb) != nil {
			return 0, ""
		}
		for _, ba := range cb.ActionCallback.BlockActions {
			if _, ok := clicks[ba.ActionID]; ok {
				id, _ := strconv.ParseInt(ba.Value, 10, 64)
				return id, ""
			}
		}
		return 0, ""
	}
	if c, err := ParseCommand(form.Get("text")); err == nil && c.Verb == "rollback" {
		return 0, c.Service
	}
	return 0, ""
}
