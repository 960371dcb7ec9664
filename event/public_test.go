package event

import (
	"strings"
	"testing"
)

func TestSeverityLevel(t *testing.T) {
	for sev, want := range map[string]Level{
		"SEV-1": LevelCritical, "sev0": LevelCritical, "P1": LevelCritical, "Critical": LevelCritical, "SEV_1": LevelCritical, "sev 1": LevelCritical,
		"SEV-2": LevelError, "p2": LevelError, "error": LevelError,
		"SEV-3": LevelWarning, "warning": LevelWarning,
		"SEV-4": LevelInfo, "": LevelInfo, "minor": LevelInfo,
	} {
		if got := SeverityLevel(sev); got != want {
			t.Errorf("SeverityLevel(%q) = %d, want %d", sev, got, want)
		}
	}
}

// Every event an incident tells stakeholders has a phase and a sentence
// without Guardian's vocabulary; the rest are not told.
func TestPublic(t *testing.T) {
	told := map[Type]Phase{
		IncidentDeclared: PhaseInvestigating, ApprovalRequested: PhaseIdentified, ApprovalDenied: PhaseIdentified,
		RollbackStarted: PhaseRollingBack, RollbackSucceeded: PhaseMonitoring, RollbackUnknown: PhaseMonitoring,
		RollbackFailed: PhaseIdentified, RecoveryFailed: PhaseIdentified, IncidentEscalated: PhaseIdentified,
		RecoveryConfirmed: PhaseMonitoring, IncidentResolved: PhaseResolved, IncidentClosed: PhaseResolved,
	}
	for _, typ := range []Type{IncidentDeclared, TriggerFired, ApprovalRequested, ApprovalGranted, ApprovalDenied,
		RollbackStarted, RollbackSucceeded, RollbackUnknown, RollbackFailed, RecoveryProgress, RecoveryFailed,
		RecoveryConfirmed, IncidentEscalated, IncidentResolved, IncidentClosed, ReportWritten, PostmortemScheduled} {
		phase, text, ok := Public(typ, "Checkout")
		want, wantOK := told[typ]
		if ok != wantOK || phase != want {
			t.Errorf("Public(%s) = %q, %v; want %q, %v", typ, phase, ok, want, wantOK)
			continue
		}
		if !ok {
			continue
		}
		if text == "" || !strings.HasSuffix(text, ".") {
			t.Errorf("Public(%s) text %q: want a sentence", typ, text)
		}
		for _, word := range []string{"trigger", "baseline", "version", "guardian", "approve"} {
			if strings.Contains(strings.ToLower(text), word) {
				t.Errorf("Public(%s) text %q says %q", typ, text, word)
			}
		}
	}
	if _, text, _ := Public(IncidentDeclared, "Checkout"); !strings.Contains(text, "Checkout") {
		t.Errorf("the first update %q does not name the service", text)
	}
}
