package store

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Instrumented counts st's failures in guardian_store_errors_total, by
// operation: a full disk, a damaged file or an unreachable API server shows
// in /metrics, not only in the log. A missing key and a conflicting
// revision are answers, not failures, and are not counted.
func Instrumented(st Store, reg prometheus.Registerer) (Store, error) {
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "guardian_store_errors_total",
		Help: "Failed reads and writes of the state store (a full disk, a damaged file, an unreachable API server), by operation.",
	}, []string{"op"})
	for _, op := range []string{"get", "put", "delete", "list", "next_id"} {
		errs.WithLabelValues(op)
	}
	if reg != nil {
		if err := reg.Register(errs); err != nil {
			return nil, err
		}
	}
	return &instrumented{Store: st, errs: errs}, nil
}

type instrumented struct {
	Store
	errs *prometheus.CounterVec
}

func (s *instrumented) count(op string, err error) error {
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) && !errors.Is(err, context.Canceled) {
		s.errs.WithLabelValues(op).Inc()
	}
	return err
}

func (s *instrumented) Get(ctx context.Context, bucket, key string) (KV, error) {
	kv, err := s.Store.Get(ctx, bucket, key)
	return kv, s.count("get", err)
}

func (s *instrumented) Put(ctx context.Context, bucket, key string, value []byte, rev uint64) (uint64, error) {
	n, err := s.Store.Put(ctx, bucket, key, value, rev)
	return n, s.count("put", err)
}

func (s *instrumented) Delete(ctx context.Context, bucket, key string) error {
	return s.count("delete", s.Store.Delete(ctx, bucket, key))
}

func (s *instrumented) List(ctx context.Context, bucket string) ([]KV, error) {
	kvs, err := s.Store.List(ctx, bucket)
	return kvs, s.count("list", err)
}

func (s *instrumented) NextID(ctx context.Context, bucket string) (uint64, error) {
	id, err := s.Store.NextID(ctx, bucket)
	return id, s.count("next_id", err)
}
