package report

import (
	"github.com/rollback-guardian/guardian/incident"
)

// WhatChangedTitle is the heading of the reports' section on what the
// deploy changed: the start of a preliminary root cause.
const WhatChangedTitle = "What changed — the first place to look"

// NotToldText is what the reports say when Guardian was told nothing of
// what the bad version or its baseline deployed.
const NotToldText = "Guardian was not told what changed. Announce deploys with POST /api/v1/deployments and its commit, author and change_url fields, or let Guardian follow the service's Kubernetes workload (deploy.kubernetes) to learn its images and Helm chart."

// VersionChange is what a report says one version deployed.
type VersionChange struct {
	// Role is "bad" or "baseline".
	Role    string `json:"role"`
	Version string `json:"version"`
	// Known reports whether Guardian was told anything of it; the fields
	// below are empty otherwise.
	Known     bool     `json:"known"`
	Images    []string `json:"images,omitempty"`
	Chart     string   `json:"chart,omitempty"`
	Commit    string   `json:"commit,omitempty"`
	Author    string   `json:"author,omitempty"`
	ChangeURL string   `json:"change_url,omitempty"`
}

// WhatChanged lists what r knows of what the bad version and its baseline
// (when there is one) deployed.
func WhatChanged(r incident.Record) []VersionChange {
	out := []VersionChange{versionChange(r, "bad", r.Version)}
	if r.Baseline != "" {
		out = append(out, versionChange(r, "baseline", r.Baseline))
	}
	return out
}

func versionChange(r incident.Record, role, version string) VersionChange {
	vc := VersionChange{Role: role, Version: version}
	for _, c := range r.Changes {
		if c.Version == version && !c.Empty() {
			vc.Known = true
			vc.Images, vc.Chart, vc.Commit, vc.Author, vc.ChangeURL = c.Images, c.Chart, c.Commit, c.Author, c.ChangeURL
			break
		}
	}
	return vc
}

// anyKnown reports whether any of vs is known.
func anyKnown(vs []VersionChange) bool {
	for _, v := range vs {
		if v.Known {
			return true
		}
	}
	return false
}

// label is "v2.4.1 (bad)".
func (v VersionChange) label() string {
	return orUnknown(v.Version) + " (" + v.Role + ")"
}

// fact is one known field of a version's change: its label and values.
type fact struct {
	Label  string
	Values []string
	// Link: the value is the change URL.
	Link bool
}

// facts are v's known fields, in the reports' order.
func (v VersionChange) facts() []fact {
	var out []fact
	if v.Commit != "" {
		out = append(out, fact{Label: "commit", Values: []string{v.Commit}})
	}
	if v.Author != "" {
		out = append(out, fact{Label: "author", Values: []string{v.Author}})
	}
	if len(v.Images) > 0 {
		label := "image"
		if len(v.Images) > 1 {
			label = "images"
		}
		out = append(out, fact{Label: label, Values: v.Images})
	}
	if v.Chart != "" {
		out = append(out, fact{Label: "Helm chart", Values: []string{v.Chart}})
	}
	if v.ChangeURL != "" {
		out = append(out, fact{Label: "change", Values: []string{v.ChangeURL}, Link: true})
	}
	return out
}
