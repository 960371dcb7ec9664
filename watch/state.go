package watch

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/rollout"
	"github.com/rollback-guardian/guardian/store"
	"github.com/rollback-guardian/guardian/trigger"
)

// savedState is what a service keeps across restarts: the versions it has
// learnt and its open watch window, so that a restart in the middle of a
// watch neither misses the bad deploy nor reports it twice.
type savedState struct {
	Detector rollout.State `json:"detector"`
	Watch    *savedWatch   `json:"watch,omitempty"`
}

type savedWatch struct {
	Deploy rollout.Event `json:"deploy"`
	Until  time.Time     `json:"until"`
	Fired  bool          `json:"fired"`
	// Regressed holds, by trigger, when a sequential test decided that
	// the deploy regressed: the decision stands for the deploy.
	Regressed map[string]time.Time `json:"regressed,omitempty"`
}

// latcher is a trigger whose decision stands for its deploy once taken
// (a sequential test that found a regression).
type latcher interface {
	Regressed() (time.Time, bool)
	Latch(d trigger.Deploy, at time.Time)
}

// save persists the learnt state when it changed. Callers hold s.mu.
func (s *Service) save(ctx context.Context) {
	if s.persist == nil || ctx.Err() != nil {
		return
	}
	st := savedState{Detector: s.detector.State()}
	if s.watch != nil {
		st.Watch = &savedWatch{Deploy: s.watch.deploy, Until: s.watch.until, Fired: s.watch.fired}
		for _, tr := range s.triggers {
			if l, ok := tr.(latcher); ok {
				if at, ok := l.Regressed(); ok {
					if st.Watch.Regressed == nil {
						st.Watch.Regressed = map[string]time.Time{}
					}
					st.Watch.Regressed[tr.Name()] = at
				}
			}
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	sum := sha256.Sum256(b)
	if sum == s.lastSaved {
		return
	}
	// The versions' traffic shares and last-seen times change at nearly
	// every tick; alone they are saved at most every TickSaveInterval
	// (a crash loses that much of them: baselines and forgetting barely
	// move), everything else at once.
	st.Detector.Traffic, st.Detector.Seen = nil, nil
	key, _ := json.Marshal(st)
	keySum := sha256.Sum256(key)
	if keySum == s.lastKey && time.Since(s.savedAt) < TickSaveInterval {
		return
	}
	if err := s.persist(ctx, s.name, b); err != nil {
		s.log.Warn("saving the deploy state", zap.Error(err))
		return
	}
	s.lastSaved, s.lastKey, s.savedAt = sum, keySum, time.Now()
}

// TickSaveInterval is the least time between two saves of a service's
// state that differ only in its versions' traffic shares and last-seen
// times. Saving those at every tick would cost a write per service and
// tick: in a ConfigMap store, the API server's heaviest load.
const TickSaveInterval = time.Minute

// Restore takes over the state a service saved (through its PersistFunc)
// before a restart: the versions it had learnt and its open watch, unless
// that watch's window ended before now. Call it before Run.
func (s *Service) Restore(b []byte, now time.Time) error {
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("restoring the deploy state of %s: %w", s.name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.detector.Restore(st.Detector)
	if w := st.Watch; w != nil && now.Before(w.Until) {
		s.watch = &window{deploy: w.Deploy, until: w.Until, fired: w.Fired}
		s.m.watching.set(1, s.name)
		for _, tr := range s.triggers {
			if at, ok := w.Regressed[tr.Name()]; ok {
				if l, ok := tr.(latcher); ok {
					l.Latch(s.deployFor(), at)
				}
			}
		}
		s.log.Info("resuming the watch of a deploy after a restart", zap.String("version", w.Deploy.Version),
			zap.String("baseline", w.Deploy.Baseline), zap.Time("until", w.Until))
	}
	s.lastSaved = sha256.Sum256(b)
	st.Detector.Traffic, st.Detector.Seen = nil, nil
	key, _ := json.Marshal(st)
	s.lastKey, s.savedAt = sha256.Sum256(key), time.Now()
	return nil
}

// Bucket holds each service's saved state in a store.Store, by name.
const Bucket = "services"

// StoreState saves and restores services' state in a store.Store.
type StoreState struct {
	// Store is read at each call, so it may be set after the services are
	// built.
	Store func() store.Store
}

// Persist is a PersistFunc: it saves a service's state (last write wins:
// one loop per service writes it).
func (ss StoreState) Persist(ctx context.Context, service string, b []byte) error {
	st := ss.Store()
	rev := uint64(0)
	if kv, err := st.Get(ctx, Bucket, service); err == nil {
		rev = kv.Revision
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	_, err := st.Put(ctx, Bucket, service, b, rev)
	return err
}

// RestoreAll gives each of services the state it saved, if any, reading
// the store once (one List instead of a read per service: a replica that
// takes over hundreds of services from a ConfigMap store). It returns the
// services it could not restore, each with its error.
func (ss StoreState) RestoreAll(ctx context.Context, services []*Service, now time.Time) map[string]error {
	kvs, err := ss.Store().List(ctx, Bucket)
	errs := map[string]error{}
	if err != nil {
		for _, s := range services {
			errs[s.Name()] = fmt.Errorf("loading the saved states: %w", err)
		}
		return errs
	}
	saved := make(map[string][]byte, len(kvs))
	for _, kv := range kvs {
		saved[kv.Key] = kv.Value
	}
	for _, s := range services {
		if b, ok := saved[s.Name()]; ok {
			if err := s.Restore(b, now); err != nil {
				errs[s.Name()] = err
			}
		}
	}
	return errs
}

// Restore gives s the state it saved before a restart, if any.
func (ss StoreState) Restore(ctx context.Context, s *Service, now time.Time) error {
	kv, err := ss.Store().Get(ctx, Bucket, s.Name())
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading the state of %s: %w", s.Name(), err)
	}
	return s.Restore(kv.Value, now)
}
