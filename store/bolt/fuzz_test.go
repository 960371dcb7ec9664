package bolt_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/store/bolt"
)

// FuzzOpen damages a small state file (patch written at offset at, then
// the file cut to cut bytes unless cut is 0) and opens it: Open either
// fails, naming the file, or returns a store whose reads and writes
// return; never a panic, a crash or a hang (which the fuzzer reports).
func FuzzOpen(f *testing.F) {
	path := filepath.Join(f.TempDir(), "guardian.db")
	writeIncidents(f, path, 3)
	base, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	ps := uint32(pageSize)
	f.Add(uint32(0), []byte{}, uint32(0))
	f.Add(2*ps, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x10, 0x00}, uint32(0))
	f.Add(3*ps+16, []byte{0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff}, uint32(0))
	f.Add(uint32(0), []byte{}, 3*ps)
	f.Add(ps+64, []byte("garbage in the second meta page"), uint32(0))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, at uint32, patch []byte, cut uint32) {
		file := slices.Clone(base)
		copy(file[int(at)%len(file):], patch)
		if cut != 0 {
			file = file[:int(cut)%len(file)]
		}
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := bolt.OpenTimeout(path, 100*time.Millisecond, zap.NewNop())
		if err != nil {
			// Damage, or a value Guardian does not read (the schema version).
			if !strings.Contains(err.Error(), path) || errors.Is(err, bolt.ErrLocked) {
				t.Fatalf("Open: err = %v, want an error naming the file", err)
			}
			return
		}
		defer s.Close()
		for _, bucket := range []string{"incidents", "outbox"} {
			_, _ = s.List(ctx, bucket)
			_, _ = s.Get(ctx, bucket, store.Key(2))
			if id, err := s.NextID(ctx, bucket); err == nil {
				_, _ = s.Put(ctx, bucket, store.Key(id), []byte("new"), 0)
			}
			_ = s.Delete(ctx, bucket, store.Key(1))
		}
		_, _ = s.Buckets(ctx)
		_ = s.Check()
	})
}
