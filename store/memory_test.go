package store_test

import (
	"strings"
	"testing"

	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/store/storetest"
)

func TestMemoryContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := store.NewMemory()
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestKeySortsNumerically(t *testing.T) {
	tests := []struct {
		a, b uint64
	}{
		{1, 2},
		{9, 10},
		{99, 100},
		{1<<63 - 1, 1 << 63},
		{1<<64 - 2, 1<<64 - 1},
	}
	for _, tc := range tests {
		t.Run(store.Key(tc.a)+"<"+store.Key(tc.b), func(t *testing.T) {
			ka, kb := store.Key(tc.a), store.Key(tc.b)
			if !(ka < kb) {
				t.Errorf("Key(%d)=%q does not sort before Key(%d)=%q", tc.a, ka, tc.b, kb)
			}
			if len(ka) != 20 || store.CheckKey(ka) != nil {
				t.Errorf("Key(%d)=%q is not a 20-digit valid key", tc.a, ka)
			}
		})
	}
}

func TestCheckNames(t *testing.T) {
	tests := []struct {
		name   string
		bucket string
		ok     bool
	}{
		{"lower-case word", "outbox", true},
		{"with dash and digits", "incidents-v2", true},
		{"leading dash", "-x", false},
		{"trailing dash", "x-", false},
		{"underscore", "a_b", false},
		{"too long", strings.Repeat("a", 64), false},
		{"longest", strings.Repeat("a", 63), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := store.CheckBucket(tc.bucket); (err == nil) != tc.ok {
				t.Errorf("CheckBucket(%q) = %v, want ok=%v", tc.bucket, err, tc.ok)
			}
		})
	}
}
