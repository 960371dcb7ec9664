//go:build !nokubernetes

package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/rollback-guardian/guardian/shard"
)

// The labels and annotation of the shard and membership Leases. One List
// with LabelManagedBy, LabelShardSet and (implicitly) LabelLease reads all
// the Leases of one deployment.
const (
	// LabelManagedBy is app.kubernetes.io/managed-by=guardian on every
	// Lease a Shards controller writes.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// LabelLease says what a Lease is: "shard" or "member".
	LabelLease = "guardian.io/lease"
	// LabelShardSet names the set of Leases of one deployment: the Lease
	// name prefix without its trailing dashes.
	LabelShardSet = "guardian.io/shard-set"
	// AnnotationShards, on a membership Lease, is the number of shards its
	// replica splits the services into.
	AnnotationShards = "guardian.io/shards"
)

// DefaultShardPrefix starts the names of the shard Leases when the
// configuration names no prefix.
const DefaultShardPrefix = "guardian-shard-"

// ShardsConfig configures a Shards controller.
type ShardsConfig struct {
	// Namespace holds the Leases.
	Namespace string
	// Prefix starts the Lease names: shard n's Lease is <Prefix><n>, a
	// replica's membership Lease <Prefix>member-<hash of its identity>
	// (default DefaultShardPrefix).
	Prefix string
	// Identity names this replica in the Leases' holderIdentity: its name
	// and advertised URL, as Identity returns them. Required.
	Identity string
	// Shards is the number of shards (default shard.DefaultShards). Every
	// replica of a deployment must use the same number: a replica that
	// sees a live member announcing another number acquires nothing.
	Shards int
	// LeaseDuration is how long a Lease stays valid after this replica
	// last saw it change (default 15s).
	LeaseDuration time.Duration
	// RenewDeadline is how long after the last successful write of a
	// shard Lease this replica goes on driving the shard when it cannot
	// renew it (default 10s). Shorter than LeaseDuration: the difference
	// is the safety margin, and OnChange must return well within it.
	RenewDeadline time.Duration
	// RetryPeriod is the time between two rounds of reading, renewing,
	// releasing and acquiring (default 2s). Shorter than RenewDeadline.
	RetryPeriod time.Duration
	// OnChange, if set, is called with the shards this replica drives, in
	// increasing order, every time the set changes; the calls never
	// overlap. When a shard leaves the set, OnChange must return only once
	// nothing drives that shard's services any more: the Lease is released
	// after it returns, and another replica may take the shard at once.
	// When the set shrinks because a renewal failed for RenewDeadline,
	// OnChange has LeaseDuration - RenewDeadline to return before another
	// replica may take the shard. OnChange must not call the Shards
	// methods that change state (Run); Owns, Owner and Snapshot are safe.
	OnChange func(owned []int)
}

// withDefaults returns c with its zero fields set to their defaults, or an
// error naming the first bad field.
func (c ShardsConfig) withDefaults() (ShardsConfig, error) {
	c.Prefix = cmp.Or(c.Prefix, DefaultShardPrefix)
	c.Shards = cmp.Or(c.Shards, shard.DefaultShards)
	c.LeaseDuration = cmp.Or(c.LeaseDuration, 15*time.Second)
	c.RenewDeadline = cmp.Or(c.RenewDeadline, 10*time.Second)
	c.RetryPeriod = cmp.Or(c.RetryPeriod, 2*time.Second)
	switch {
	case c.Namespace == "":
		return c, errors.New("shards: no namespace: set the namespace that holds the shard Leases")
	case c.Identity == "":
		return c, errors.New("shards: no identity: set this replica's identity (name|advertised URL)")
	case c.Shards < 0:
		return c, fmt.Errorf("shards: %d shards: the number of shards must be positive", c.Shards)
	case c.RetryPeriod <= 0 || c.RenewDeadline <= c.RetryPeriod || c.LeaseDuration <= c.RenewDeadline:
		return c, fmt.Errorf("shards: timings lease duration %s, renew deadline %s, retry period %s: need lease duration > renew deadline > retry period > 0",
			c.LeaseDuration, c.RenewDeadline, c.RetryPeriod)
	}
	if errs := validation.IsDNS1123Subdomain(c.Prefix + "member-0123456789abcdef"); len(errs) > 0 {
		return c, fmt.Errorf("shards: Lease name prefix %q: %s", c.Prefix, strings.Join(errs, "; "))
	}
	return c, nil
}

// Shards drives this replica's share of the shard Leases: one
// coordination.k8s.io Lease per shard, held by the replica that drives the
// services of that shard, and one membership Lease per live replica. At
// every RetryPeriod it renews its membership Lease, reads every Lease with
// one List, renews the shard Leases it holds, and releases and acquires
// the ones shard.Desired names. See docs/sharding.md.
type Shards struct {
	cfg        ShardsConfig
	leases     coordinationclient.LeaseInterface
	log        *zap.Logger
	memberName string
	selector   string
	setLabel   string

	// Loop state, touched only by Run's goroutine and the writes it
	// waits for.
	seen   map[string]observed // Lease name → its last change as this replica saw it
	mineMu sync.Mutex
	mine   map[int]*coordinationv1.Lease // the shard Leases in this replica's name, as last read or written
	crash  atomic.Bool                   // tests: end Run without releasing anything, as a killed process would

	// changeMu serialises the changes of driven and the OnChange calls.
	changeMu sync.Mutex
	mu       sync.Mutex
	driven   map[int]time.Time // shard → when its last successful write was sent
	holders  []string          // the last view: holder of each shard, "" for free or expired
	members  []string
	kick     chan struct{}

	owned       prometheus.Gauge
	total       prometheus.Gauge
	transitions *prometheus.CounterVec
	errs        prometheus.Counter
}

// observed is a Lease's resourceVersion and when this replica first saw
// it, on its monotonic clock.
type observed struct {
	version string
	at      time.Time
}

// NewShards returns a controller of cfg's shard Leases through client. Its
// metrics are registered with reg (nil: not registered).
//
// A replica writes about S/N + 1 Leases and lists them once every
// RetryPeriod, one request after the other, so client's rate limit must
// allow (S/N + 2) / RetryPeriod requests a second with room to spare:
// client-go's default (5 a second, bursts of 10) is too low past a few
// shards per replica; give the controller its own client with a QPS of at
// least S/N.
func NewShards(client kubernetes.Interface, cfg ShardsConfig, log *zap.Logger, reg prometheus.Registerer) (*Shards, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	set := strings.TrimRight(cfg.Prefix, "-.")
	if len(validation.IsValidLabelValue(set)) > 0 {
		set = "h" + hashHex(cfg.Prefix)
	}
	s := &Shards{
		cfg:        cfg,
		leases:     client.CoordinationV1().Leases(cfg.Namespace),
		log:        log.With(zap.String("identity", cfg.Identity)),
		memberName: cfg.Prefix + "member-" + hashHex(cfg.Identity),
		selector: labels.SelectorFromSet(labels.Set{
			LabelManagedBy: "guardian",
			LabelShardSet:  set,
		}).String(),
		setLabel: set,
		seen:     map[string]observed{},
		mine:     map[int]*coordinationv1.Lease{},
		driven:   map[int]time.Time{},
		holders:  make([]string, cfg.Shards),
		kick:     make(chan struct{}, 1),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "guardian_shards_owned", Help: "Shards whose services this replica drives.",
		}),
		total: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "guardian_shards", Help: "Shards the services are split into (the same on every replica).",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "guardian_shard_lease_transitions_total",
			Help: "Shard Leases this replica acquired, released, or lost (could not renew in time, or found taken).",
		}, []string{"action"}),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "guardian_shard_lease_errors_total", Help: "Failed reads and writes of the shard and membership Leases.",
		}),
	}
	for _, a := range []string{"acquire", "release", "lost"} {
		s.transitions.WithLabelValues(a)
	}
	if reg != nil {
		s.total.Set(float64(cfg.Shards))
		for _, c := range []prometheus.Collector{s.owned, s.total, s.transitions, s.errs} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("shards: registering metrics: %w", err)
			}
		}
	}
	return s, nil
}

func hashHex(s string) string {
	h := fnv.New64a()
	h.Write([]byte(s))
	return fmt.Sprintf("%016x", h.Sum64())
}

// shardIndex returns the shard whose Lease l is, if it is one.
func (s *Shards) shardIndex(l *coordinationv1.Lease) (int, bool) {
	if l.Labels[LabelLease] != "shard" {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimPrefix(l.Name, s.cfg.Prefix))
	return n, err == nil && n >= 0 && n < s.cfg.Shards && l.Name == s.ShardLeaseName(n)
}

// ShardLeaseName returns the name of shard n's Lease.
func (s *Shards) ShardLeaseName(n int) string { return s.cfg.Prefix + strconv.Itoa(n) }

// Run drives the Leases until ctx ends, then stops driving every shard
// (OnChange with none), releases the shard Leases and deletes its
// membership Lease, so that the other replicas take the shards at their
// next round. It returns nil when ctx ends; API errors are counted, logged
// and retried at the next round.
func (s *Shards) Run(ctx context.Context) error {
	wctx, stopWatchdog := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.watchdog(wctx) })
	s.log.Info("shards: joining", zap.Int("shards", s.cfg.Shards), zap.String("membership_lease", s.memberName))

	t := time.NewTicker(s.cfg.RetryPeriod)
	for ctx.Err() == nil {
		s.round(ctx)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	t.Stop()
	s.setDriven(func(d map[int]time.Time) { clear(d) })
	stopWatchdog()
	wg.Wait()
	if s.crash.Load() {
		return nil
	}
	s.leave()
	return nil
}

// leave releases every Lease still in this replica's name and deletes its
// membership Lease, within RenewDeadline. It reads the Leases again: the
// last round may have ended half-way, with versions out of date.
func (s *Shards) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RenewDeadline)
	defer cancel()
	var released atomic.Int64
	if list, err := s.leases.List(ctx, metav1.ListOptions{LabelSelector: s.selector}); err != nil {
		s.fail("listing the shard Leases to release them", err)
	} else {
		clear(s.mine)
		for i := range list.Items {
			l := &list.Items[i]
			n, ok := s.shardIndex(l)
			if ok && holderOf(l) == s.cfg.Identity {
				s.mine[n] = l
			}
		}
	}
	eachParallel(slices.Sorted(maps.Keys(s.mine)), func(n int) {
		if s.release(ctx, n) {
			released.Add(1)
		}
	})
	err := s.leases.Delete(ctx, s.memberName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		s.errs.Inc()
		s.log.Warn("shards: deleting the membership Lease on leaving", zap.Error(err))
	}
	s.log.Info("shards: left", zap.Int64("released", released.Load()))
}

// watchdog stops driving a shard as soon as RenewDeadline has passed since
// its last successful write, whatever the rounds are doing (a round may be
// stuck on a slow API server).
func (s *Shards) watchdog(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		s.mu.Lock()
		var next time.Time
		for _, last := range s.driven {
			if next.IsZero() || last.Before(next) {
				next = last
			}
		}
		s.mu.Unlock()
		if next.IsZero() {
			t.Reset(time.Hour)
		} else {
			t.Reset(time.Until(next.Add(s.cfg.RenewDeadline)))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-t.C:
			s.setDriven(func(d map[int]time.Time) {
				now := time.Now()
				for n, last := range d {
					if now.Sub(last) >= s.cfg.RenewDeadline {
						delete(d, n)
						s.transitions.WithLabelValues("lost").Inc()
						s.log.Warn("shards: stopped driving a shard not renewed within the renew deadline",
							zap.Int("shard", n), zap.Duration("renew_deadline", s.cfg.RenewDeadline))
					}
				}
			})
		}
	}
}

// setDriven applies change to the driven set and, if the set changed,
// calls OnChange before it returns.
func (s *Shards) setDriven(change func(map[int]time.Time)) {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	s.mu.Lock()
	before := slices.Sorted(maps.Keys(s.driven))
	change(s.driven)
	after := slices.Sorted(maps.Keys(s.driven))
	s.mu.Unlock()
	s.poke()
	if slices.Equal(before, after) {
		return
	}
	s.owned.Set(float64(len(after)))
	if s.cfg.OnChange != nil {
		s.cfg.OnChange(after)
	}
}

func (s *Shards) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// renewed records a successful write of shard n sent at sent, if this
// replica still drives n.
func (s *Shards) renewed(n int, sent time.Time) {
	s.mu.Lock()
	if _, ok := s.driven[n]; ok {
		s.driven[n] = sent
	}
	s.mu.Unlock()
	s.poke()
}

func (s *Shards) driving(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.driven[n]
	return ok
}

// observe records a Lease as read at now and returns when this replica
// first saw its current version.
func (s *Shards) observe(l *coordinationv1.Lease, now time.Time) time.Time {
	o, ok := s.seen[l.Name]
	if !ok || o.version != l.ResourceVersion {
		o = observed{l.ResourceVersion, now}
		s.seen[l.Name] = o
	}
	return o.at
}

// expired reports whether l, held by another replica, has gone unchanged
// for its lease duration (the longer of ours and the one it announces) as
// this replica judges it on its own clock.
func (s *Shards) expired(l *coordinationv1.Lease, now time.Time) bool {
	d := s.cfg.LeaseDuration
	if l.Spec.LeaseDurationSeconds != nil {
		d = max(d, time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second)
	}
	return now.Sub(s.seen[l.Name].at) >= d
}

func holderOf(l *coordinationv1.Lease) string {
	if l == nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// round is one RetryPeriod's work.
func (s *Shards) round(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RenewDeadline)
	defer cancel()
	self := s.cfg.Identity

	list, err := s.leases.List(ctx, metav1.ListOptions{LabelSelector: s.selector})
	// Changes are dated from after the List returned: later than the
	// holder's write, so that expiry is never judged early.
	now := time.Now()
	if err != nil {
		s.fail("listing the shard Leases", err)
		return
	}
	shardLeases := make([]*coordinationv1.Lease, s.cfg.Shards)
	var memberLeases []*coordinationv1.Lease
	var own *coordinationv1.Lease
	names := map[string]bool{}
	for i := range list.Items {
		l := &list.Items[i]
		names[l.Name] = true
		s.observe(l, now)
		switch {
		case l.Name == s.memberName:
			own = l
		case l.Labels[LabelLease] == "member":
			memberLeases = append(memberLeases, l)
		default:
			if n, ok := s.shardIndex(l); ok {
				shardLeases[n] = l
			}
		}
	}
	for name := range s.seen {
		if !names[name] {
			delete(s.seen, name)
		}
	}

	s.renewMembership(ctx, own, now)

	// Shards taken from this replica (only an operator or a replica with
	// other timings could do that): stop driving them at once.
	var lost []int
	for n := range s.cfg.Shards {
		if s.driving(n) && holderOf(shardLeases[n]) != self {
			lost = append(lost, n)
		}
	}
	s.stopDriving(lost, "lost", "shards: a shard Lease is no longer in this replica's name")

	// Renew what it drives; release what is in its name but not driven
	// (a renewal came too late).
	clear(s.mine)
	for n, l := range shardLeases {
		if holderOf(l) == self {
			s.mine[n] = l
		}
	}
	eachParallel(slices.Sorted(maps.Keys(s.mine)), func(n int) {
		if s.driving(n) {
			s.renew(ctx, n)
		} else {
			s.release(ctx, n)
		}
	})

	// Members: itself and every membership Lease not expired with the
	// same number of shards; a Lease expired for twice its duration is
	// deleted.
	members := []string{self}
	fence := ""
	for _, l := range memberLeases {
		id := holderOf(l)
		switch {
		case id == "" || id == self:
		case s.expired(l, now):
			if now.Sub(s.seen[l.Name].at) >= 2*s.cfg.LeaseDuration {
				s.deleteMember(ctx, l)
			}
		case l.Annotations[AnnotationShards] != strconv.Itoa(s.cfg.Shards):
			// Its shard n holds other services than ours: it is no
			// member, and nobody acquires until the counts agree.
			fence = id + " splits the services into " + l.Annotations[AnnotationShards] + " shards"
		default:
			members = append(members, id)
		}
	}
	holders := make([]string, s.cfg.Shards)
	for n, l := range shardLeases {
		switch h := holderOf(l); {
		case s.driving(n):
			holders[n] = self
		case h != "" && h != self && !s.expired(l, now):
			holders[n] = h
		}
	}
	acquire, release := shard.Desired(self, members, holders)
	s.stopDriving(release, "release", "")
	eachParallel(release, func(n int) { s.release(ctx, n) })
	for _, n := range release {
		holders[n] = ""
	}
	if fence != "" {
		s.errs.Inc()
		s.log.Error("shards: acquiring nothing while a live replica uses another number of shards: give every replica the same number",
			zap.Int("shards", s.cfg.Shards), zap.String("other", fence))
		acquire = nil
	}
	var startedMu sync.Mutex
	started := map[int]time.Time{}
	eachParallel(acquire, func(n int) {
		if sent, ok := s.acquire(ctx, n, shardLeases[n]); ok {
			startedMu.Lock()
			started[n] = sent
			startedMu.Unlock()
		}
	})
	for n := range started {
		holders[n] = self
	}
	if len(started) > 0 {
		s.setDriven(func(d map[int]time.Time) { maps.Copy(d, started) })
		s.transitions.WithLabelValues("acquire").Add(float64(len(started)))
		s.log.Info("shards: acquired", zap.Ints("shards", slices.Sorted(maps.Keys(started))))
	}

	slices.Sort(members)
	s.mu.Lock()
	s.holders, s.members = holders, members
	s.mu.Unlock()
}

// stopDriving removes shards from the driven set (OnChange returns before
// it does) and counts those it drove as action.
func (s *Shards) stopDriving(shards []int, action, warn string) {
	if len(shards) == 0 {
		return
	}
	var stopped []int
	s.setDriven(func(d map[int]time.Time) {
		for _, n := range shards {
			if _, ok := d[n]; ok {
				delete(d, n)
				stopped = append(stopped, n)
			}
		}
	})
	if len(stopped) == 0 {
		return
	}
	s.transitions.WithLabelValues(action).Add(float64(len(stopped)))
	if warn != "" {
		s.log.Warn(warn, zap.Ints("shards", stopped))
	} else {
		s.log.Info("shards: releasing", zap.Ints("shards", stopped))
	}
}

func (s *Shards) fail(what string, err error) {
	if errors.Is(err, context.Canceled) {
		return // Run is ending
	}
	s.errs.Inc()
	s.log.Warn("shards: "+what+": retrying at the next round", zap.Error(err))
}

func (s *Shards) leaseMeta(name, kind string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: s.cfg.Namespace, Labels: map[string]string{
		LabelManagedBy: "guardian", LabelShardSet: s.setLabel, LabelLease: kind,
	}}
}

func (s *Shards) leaseSeconds() *int32 {
	v := int32(math.Ceil(s.cfg.LeaseDuration.Seconds()))
	return &v
}

// renewMembership creates or renews this replica's membership Lease.
func (s *Shards) renewMembership(ctx context.Context, own *coordinationv1.Lease, now time.Time) {
	id := s.cfg.Identity
	t := metav1.NewMicroTime(now)
	var err error
	if own == nil {
		l := &coordinationv1.Lease{ObjectMeta: s.leaseMeta(s.memberName, "member")}
		l.Annotations = map[string]string{AnnotationShards: strconv.Itoa(s.cfg.Shards)}
		l.Spec = coordinationv1.LeaseSpec{HolderIdentity: &id, LeaseDurationSeconds: s.leaseSeconds(), AcquireTime: &t, RenewTime: &t}
		_, err = s.leases.Create(ctx, l, metav1.CreateOptions{})
	} else {
		l := own.DeepCopy()
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		l.Annotations[AnnotationShards] = strconv.Itoa(s.cfg.Shards)
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &id, s.leaseSeconds(), &t
		_, err = s.leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		s.fail("renewing the membership Lease "+s.memberName, err)
	}
}

func (s *Shards) deleteMember(ctx context.Context, l *coordinationv1.Lease) {
	rv := l.ResourceVersion
	err := s.leases.Delete(ctx, l.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
	switch {
	case err == nil:
		s.log.Info("shards: deleted an expired membership Lease", zap.String("lease", l.Name), zap.String("member", holderOf(l)))
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
	default:
		s.fail("deleting the expired membership Lease "+l.Name, err)
	}
}

// parallelWrites is how many Lease writes a round keeps in flight. A
// round of a replica holding 256 shards took 1.2 s with writes one after
// the other and 0.5 s with 8 in flight, on the test API server of a loaded
// two-CPU machine (BenchmarkShardsRound).
const parallelWrites = 8

// eachParallel calls f for every shard of ns, parallelWrites at a time, and
// returns when every call has.
func eachParallel(ns []int, f func(n int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallelWrites)
	for _, n := range ns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(n)
		})
	}
	wg.Wait()
}

func (s *Shards) getMine(n int) *coordinationv1.Lease {
	s.mineMu.Lock()
	defer s.mineMu.Unlock()
	return s.mine[n]
}

// setMine records shard n's Lease as last written, or forgets it (nil).
func (s *Shards) setMine(n int, l *coordinationv1.Lease) {
	s.mineMu.Lock()
	defer s.mineMu.Unlock()
	if l == nil {
		delete(s.mine, n)
	} else {
		s.mine[n] = l
	}
}

// renew writes shard n's Lease, in this replica's name, with the
// resourceVersion read; a conflict means another replica took it.
func (s *Shards) renew(ctx context.Context, n int) {
	l := s.getMine(n).DeepCopy()
	if l == nil {
		return
	}
	sent := time.Now()
	t := metav1.NewMicroTime(sent)
	l.Spec.RenewTime, l.Spec.LeaseDurationSeconds = &t, s.leaseSeconds()
	got, err := s.leases.Update(ctx, l, metav1.UpdateOptions{})
	switch {
	case err == nil:
		s.setMine(n, got)
		s.renewed(n, sent)
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		s.setMine(n, nil)
		s.stopDriving([]int{n}, "lost", "shards: a shard Lease changed under this replica")
	default:
		s.fail("renewing shard Lease "+l.Name, err)
	}
}

// release clears the holder of shard n's Lease, which this replica no
// longer drives, and reports whether it did.
func (s *Shards) release(ctx context.Context, n int) bool {
	l := s.getMine(n).DeepCopy()
	if l == nil {
		return false
	}
	t := metav1.NewMicroTime(time.Now())
	l.Spec.HolderIdentity, l.Spec.RenewTime = nil, &t
	_, err := s.leases.Update(ctx, l, metav1.UpdateOptions{})
	switch {
	case err == nil || apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		s.setMine(n, nil)
		return err == nil
	default:
		s.fail("releasing shard Lease "+l.Name, err)
		return false
	}
}

// acquire writes shard n's Lease in this replica's name: a Create if there
// is none, else an Update with the resourceVersion read (free or expired).
// It returns when the write was sent and whether it succeeded; a conflict
// means another replica was first.
func (s *Shards) acquire(ctx context.Context, n int, old *coordinationv1.Lease) (time.Time, bool) {
	id := s.cfg.Identity
	sent := time.Now()
	t := metav1.NewMicroTime(sent)
	var (
		got *coordinationv1.Lease
		err error
	)
	if old == nil {
		l := &coordinationv1.Lease{ObjectMeta: s.leaseMeta(s.ShardLeaseName(n), "shard")}
		zero := int32(0)
		l.Spec = coordinationv1.LeaseSpec{HolderIdentity: &id, LeaseDurationSeconds: s.leaseSeconds(), AcquireTime: &t, RenewTime: &t, LeaseTransitions: &zero}
		got, err = s.leases.Create(ctx, l, metav1.CreateOptions{})
	} else {
		l := old.DeepCopy()
		tr := int32(0)
		if l.Spec.LeaseTransitions != nil {
			tr = *l.Spec.LeaseTransitions + 1
		}
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.AcquireTime, l.Spec.RenewTime, l.Spec.LeaseTransitions =
			&id, s.leaseSeconds(), &t, &t, &tr
		got, err = s.leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	switch {
	case err == nil:
		s.setMine(n, got)
		return sent, true
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
		return sent, false
	default:
		s.fail("acquiring shard Lease "+s.ShardLeaseName(n), err)
		return sent, false
	}
}

// ShardOf returns service's shard.
func (s *Shards) ShardOf(service string) int { return shard.ShardOf(service, s.cfg.Shards) }

// Owns reports whether this replica drives service's shard now.
func (s *Shards) Owns(service string) bool {
	return s.driving(shard.ShardOf(service, s.cfg.Shards))
}

// Owner returns the identity of the replica holding service's shard, as
// this replica last saw the Leases, and false when nobody holds it (the
// shard is changing hands: retry). After a crash it names the crashed
// replica until its Lease expires.
func (s *Shards) Owner(service string) (string, bool) {
	n := shard.ShardOf(service, s.cfg.Shards)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.driven[n]; ok {
		return s.cfg.Identity, true
	}
	h := s.holders[n]
	return h, h != "" && h != s.cfg.Identity
}

// ShardsStatus is a replica's view of the shards, for a status endpoint.
type ShardsStatus struct {
	// Identity is this replica's identity.
	Identity string `json:"identity"`
	// Members are the live replicas, sorted.
	Members []string `json:"members"`
	// Holders is the holder of each shard's Lease, "" for free or expired.
	Holders []string `json:"holders"`
	// Owned are the shards this replica drives, in increasing order.
	Owned []int `json:"owned"`
}

// Snapshot returns this replica's view as of its last round.
func (s *Shards) Snapshot() ShardsStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ShardsStatus{
		Identity: s.cfg.Identity,
		Members:  slices.Clone(s.members),
		Holders:  slices.Clone(s.holders),
		Owned:    slices.Sorted(maps.Keys(s.driven)),
	}
}
