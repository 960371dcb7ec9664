package event

import (
	"fmt"
	"strings"
	"unicode"
)

// Phase is where an incident stands as stakeholders are told it: the
// status page's update headings, and what a Statuspage incident's status
// follows.
type Phase string

// Phases, in the order an incident usually goes through them.
const (
	PhaseInvestigating Phase = "Investigating"
	PhaseIdentified    Phase = "Identified"
	PhaseRollingBack   Phase = "Rolling back"
	PhaseMonitoring    Phase = "Monitoring"
	PhaseResolved      Phase = "Resolved"
)

// Public says an incident's event in plain words for stakeholders: its
// phase and a sentence naming service by its public name, without
// versions, triggers, queries or people. ok is false for an event that is
// not told to them.
func Public(t Type, service string) (phase Phase, text string, ok bool) {
	switch t {
	case IncidentDeclared:
		return PhaseInvestigating, fmt.Sprintf("We are investigating a problem affecting %s.", service), true
	case ApprovalRequested:
		return PhaseIdentified, "We have identified a recent change as the likely cause and are preparing to undo it.", true
	case ApprovalDenied:
		return PhaseIdentified, "The cause has been identified and the team is working on a fix.", true
	case RollbackStarted:
		return PhaseRollingBack, "We are rolling back the recent change.", true
	case RollbackSucceeded, RollbackUnknown:
		return PhaseMonitoring, "The change has been rolled back. We are monitoring the recovery.", true
	case RollbackFailed, RecoveryFailed, IncidentEscalated:
		return PhaseIdentified, "Recovery is taking longer than expected. The team is working on it.", true
	case RecoveryConfirmed:
		return PhaseMonitoring, fmt.Sprintf("%s has recovered. We are monitoring to make sure it stays that way.", service), true
	case IncidentResolved:
		return PhaseResolved, "This incident has been resolved.", true
	case IncidentClosed:
		return PhaseResolved, "This incident has been closed.", true
	}
	return "", "", false
}

// Level is how grave a severity is, whatever its name.
type Level int

// Levels, gravest first.
const (
	LevelCritical Level = iota
	LevelError
	LevelWarning
	LevelInfo
)

// SeverityLevel reads a severity's name, in any case, with or without a
// dash, underscore or space: SEV-0, SEV-1, P0, P1 and critical are
// critical (a major outage); SEV-2, P2 and error an error; SEV-3, P3 and
// warning a warning; anything else information.
func SeverityLevel(sev string) Level {
	norm := strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || unicode.IsSpace(r) {
			return -1
		}
		return unicode.ToLower(r)
	}, sev)
	switch norm {
	case "sev0", "sev1", "p0", "p1", "critical":
		return LevelCritical
	case "sev2", "p2", "error":
		return LevelError
	case "sev3", "p3", "warning":
		return LevelWarning
	}
	return LevelInfo
}
