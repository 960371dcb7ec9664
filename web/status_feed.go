package web

import (
	"crypto/sha1"
	"encoding/xml"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

type atomFeed struct {
	XMLName xml.Name    `xml:"http://www.w3.org/2005/Atom feed"`
	ID      string      `xml:"id"`
	Title   string      `xml:"title"`
	Updated string      `xml:"updated"`
	Author  atomPerson  `xml:"author"`
	Links   []atomLink  `xml:"link"`
	Entries []atomEntry `xml:"entry"`
}

type atomPerson struct {
	Name string `xml:"name"`
}

type atomLink struct {
	Rel  string `xml:"rel,attr,omitempty"`
	Type string `xml:"type,attr,omitempty"`
	Href string `xml:"href,attr"`
}

type atomEntry struct {
	ID        string     `xml:"id"`
	Title     string     `xml:"title"`
	Updated   string     `xml:"updated"`
	Published string     `xml:"published"`
	Links     []atomLink `xml:"link"`
	Summary   string     `xml:"summary"`
	Content   atomText   `xml:"content"`
}

type atomText struct {
	Type string `xml:"type,attr"`
	Text string `xml:",chardata"`
}

// uuidURN is a name-based (SHA-1, version 5 style) UUID of name, as a URN:
// a stable Atom id that depends on no host name.
func uuidURN(name string) string {
	h := sha1.Sum([]byte("guardian status page\x00" + name))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// feedBase is the URL the feed's links start with: see
// StatusConfig.PublicURL. public says the request came to the status
// listener.
func (s *Server) feedBase(cfg StatusConfig, r *http.Request, public bool) string {
	for _, u := range []string{cfg.PublicURL, cfg.ExternalURL, s.opts.Flags.ExternalURL} {
		if u != "" {
			return strings.TrimRight(u, "/")
		}
		if public {
			break
		}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// atomTime formats t as an Atom date.
func atomTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// buildFeed writes the page's incidents, open and past, as an Atom feed.
func buildFeed(v statusView, base string) atomFeed {
	f := atomFeed{
		ID:     uuidURN("feed"),
		Title:  v.Title,
		Author: atomPerson{Name: v.Title},
		Links: []atomLink{
			{Rel: "self", Type: "application/atom+xml", Href: base + "/status/feed.atom"},
			{Rel: "alternate", Type: "text/html", Href: base + "/status"},
		},
	}
	var updated time.Time
	all := append(append([]incidentView{}, v.Active...), v.Past...)
	for _, iv := range all {
		if len(f.Entries) == maxFeedEntries {
			break
		}
		var body strings.Builder
		for _, u := range iv.Updates {
			fmt.Fprintf(&body, "%s — %s: %s\n", atomTime(u.At), u.Phase, u.Text)
			if u.Detail != "" {
				fmt.Fprintf(&body, "  %s\n", u.Detail)
			}
		}
		for _, d := range iv.Details {
			fmt.Fprintf(&body, "%s\n", d)
		}
		summary := iv.State.Text()
		if len(iv.Updates) > 0 {
			summary = string(iv.Updates[0].Phase) + ": " + iv.Updates[0].Text
		}
		f.Entries = append(f.Entries, atomEntry{
			// The detection time tells apart incidents that share a
			// number after the state was reset.
			ID:        uuidURN("incident/" + strconv.FormatInt(iv.ID, 10) + "/" + iv.detected.UTC().Format(time.RFC3339Nano)),
			Title:     iv.Title,
			Updated:   atomTime(iv.Updated),
			Published: atomTime(iv.Started),
			Links:     []atomLink{{Rel: "alternate", Type: "text/html", Href: fmt.Sprintf("%s/status#incident-%d", base, iv.ID)}},
			Summary:   summary,
			Content:   atomText{Type: "text", Text: strings.TrimSuffix(body.String(), "\n")},
		})
		if iv.Updated.After(updated) {
			updated = iv.Updated
		}
	}
	if updated.IsZero() {
		// No incident: the feed is as new as its oldest possible entry.
		updated = v.From
	}
	f.Updated = atomTime(updated)
	return f
}

// serveFeed serves GET /status/feed.atom.
func (s *Server) serveFeed(w http.ResponseWriter, r *http.Request, public bool) {
	recs, err := s.statusRecords(r.Context())
	if err != nil {
		s.statusUnavailable(w, err)
		return
	}
	cfg := s.statusConfig()
	f := buildFeed(buildStatus(cfg, recs, cfg.at()), s.feedBase(cfg, r, public))
	b, err := xml.MarshalIndent(f, "", "  ")
	if err != nil {
		s.log.Error("status feed: encoding", zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	statusHeaders(w, "application/atom+xml; charset=utf-8")
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(b)
}
