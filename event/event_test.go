package event

import (
	"regexp"
	"testing"
)

func TestVocabulary(t *testing.T) {
	name := regexp.MustCompile(`^[a-z]+\.[a-z_]+$`)
	seen := map[Type]bool{}
	for _, typ := range All() {
		if !name.MatchString(typ.String()) {
			t.Errorf("%q is not of the form noun.verb", typ)
		}
		if seen[typ] {
			t.Errorf("%q listed twice", typ)
		}
		seen[typ] = true
		if !typ.Known() {
			t.Errorf("%q not known", typ)
		}
	}
	if Type("incident.exploded").Known() || Type("incident.exploded").Published() {
		t.Error("an unknown type is known or published")
	}
	for _, tc := range []struct {
		t    Type
		want bool
	}{
		{IncidentDeclared, true},
		{RollbackResumed, true},
		{RollbackUnknown, true},
		{ReportWritten, true},
		{IncidentClosed, true},
		{RecoveryProgress, false},
		{SourceUnreachable, true},
		{SourceRecovered, true},
	} {
		if got := tc.t.Published(); got != tc.want {
			t.Errorf("%s.Published() = %v, want %v", tc.t, got, tc.want)
		}
	}
}
