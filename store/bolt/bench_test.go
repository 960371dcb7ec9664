package bolt_test

import (
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/store/bolt"
)

// BenchmarkCheck measures the consistency check every Open runs, on a
// state file of a thousand incidents.
func BenchmarkCheck(b *testing.B) {
	path := filepath.Join(b.TempDir(), "guardian.db")
	writeIncidents(b, path, 1000)
	s, err := bolt.OpenReadOnly(path, time.Second, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for b.Loop() {
		if err := s.Check(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen measures Open of a state file of a thousand incidents,
// check included.
func BenchmarkOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), "guardian.db")
	writeIncidents(b, path, 1000)
	for b.Loop() {
		s, err := bolt.OpenTimeout(path, time.Second, zap.NewNop())
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
