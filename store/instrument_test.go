package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rollback-guardian/guardian/store"
)

// failing fails every write with a disk error.
type failing struct{ store.Store }

var errDisk = errors.New("write guardian.db: no space left on device")

func (failing) Put(context.Context, string, string, []byte, uint64) (uint64, error) {
	return 0, errDisk
}

func TestInstrumentedCountsFailuresOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	st, err := store.Instrumented(failing{store.NewMemory()}, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := st.Put(ctx, "incidents", "a", []byte("x"), 0); !errors.Is(err, errDisk) {
		t.Fatalf("Put: %v", err)
	}
	if _, err := st.Get(ctx, "incidents", "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
	errs, _ := reg.Gather()
	var put, get float64 = -1, -1
	for _, mf := range errs {
		for _, m := range mf.GetMetric() {
			switch m.GetLabel()[0].GetValue() {
			case "put":
				put = m.GetCounter().GetValue()
			case "get":
				get = m.GetCounter().GetValue()
			}
		}
	}
	if put != 1 || get != 0 {
		t.Fatalf("put errors %v, get errors %v; want 1 and 0 (a missing key is an answer)", put, get)
	}
	if n := testutil.CollectAndCount(reg, "guardian_store_errors_total"); n != 5 {
		t.Fatalf("%d series, want one per operation", n)
	}
}
