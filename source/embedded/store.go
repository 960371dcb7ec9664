package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/annotations"
	"go.uber.org/zap"
)

// sourceLabel is the label every series of a store carries, naming the
// Source that scraped it: a Source's queries select only its own series,
// and never see the label (see sourceQuerier).
const sourceLabel = "__source__"

// Stores shares in-memory TSDB heads between Sources. A head costs about
// 180 KiB before any sample (its postings and series maps, and the
// appenders' pools of buffers): a Guardian watching a thousand services
// spent that much per service on them. Sources with the same Options.Dir
// share one head, their series told apart by a label; a head is closed,
// and its chunk directory removed, when the last Source using it is
// closed. Safe for concurrent use.
type Stores struct {
	mu     sync.Mutex
	stores map[string]*store
}

// NewStores returns an empty set of shared heads.
func NewStores() *Stores { return &Stores{stores: map[string]*store{}} }

// Len is the number of heads open.
func (ss *Stores) Len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.stores)
}

// acquire registers a Source keeping samples for retention in the head
// of dir, opening it on first use.
func (ss *Stores) acquire(dir string, retention time.Duration, logger *zap.Logger) (*store, string, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st, ok := ss.stores[dir]
	if !ok {
		var err error
		if st, err = newStore(dir, logger); err != nil {
			return nil, "", err
		}
		st.owner = ss
		ss.stores[dir] = st
	}
	return st, st.register(retention), nil
}

// store is one in-memory head and its chunk directory, shared by the
// Sources registered with it.
type store struct {
	head  *tsdb.Head
	dir   *chunkDir
	owner *Stores // nil: the store of one Source
	key   string  // in owner

	mu         sync.Mutex
	nextID     uint64
	retentions map[string]time.Duration // of the live Sources, by id
	longest    time.Duration            // the longest of retentions

	// truncating is held while the head is truncated: one truncation at a
	// time, and Sources finding it held skip theirs.
	truncating sync.Mutex
}

// newStore creates a head in a fresh chunk directory under dir
// (os.TempDir() when empty), removing first the chunk directories earlier
// runs left there.
func newStore(dir string, logger *zap.Logger) (*store, error) {
	if dir != "" {
		// Not in the system's temporary directory, which others share.
		removeStaleOnce(dir, logger)
	}
	cd, err := newChunkDir(dir)
	if err != nil {
		return nil, fmt.Errorf("creating chunk directory: %w", err)
	}
	ho := tsdb.DefaultHeadOptions()
	ho.ChunkDirRoot = cd.path
	// A Guardian's series fit in far fewer stripes than a Prometheus
	// server's default of 16384, which costs memory per head.
	ho.StripeSize = 1024
	// Isolation (each reader seeing whole appends only) costs a ring of
	// append ids per series, about 75 B each. A Source's queries do not
	// need it: they wait for the scrape under way when it is timestamped at
	// or before the evaluation (Source.awaitScrape), read no sample after
	// the evaluation time and see only their own Source's series, so they
	// never read a scrape still being committed.
	ho.IsolationDisabled = true
	head, err := tsdb.NewHead(nil, slog.New(slog.DiscardHandler), nil, nil, ho, nil)
	if err == nil {
		err = head.Init(math.MinInt64)
		if err != nil {
			_ = head.Close()
		}
	}
	if err != nil {
		_ = cd.remove()
		return nil, fmt.Errorf("creating tsdb head: %w", err)
	}
	return &store{head: head, dir: cd, key: dir, retentions: map[string]time.Duration{}}, nil
}

// register adds a Source keeping samples for retention and returns its
// id, the value of its series' sourceLabel.
func (st *store) register(retention time.Duration) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.nextID++
	id := strconv.FormatUint(st.nextID, 36)
	st.retentions[id] = retention
	st.longest = max(st.longest, retention)
	return id
}

// release removes the Source id; the last one closes the head and removes
// its chunk directory. The Source's series stay in the head until their
// samples are older than every retention.
func (st *store) release(id string) error {
	if st.owner != nil {
		st.owner.mu.Lock()
		defer st.owner.mu.Unlock()
	}
	st.mu.Lock()
	delete(st.retentions, id)
	st.longest = 0
	for _, r := range st.retentions {
		st.longest = max(st.longest, r)
	}
	left := len(st.retentions)
	st.mu.Unlock()
	if left > 0 {
		return nil
	}
	if st.owner != nil {
		delete(st.owner.stores, st.key)
	}
	return errors.Join(st.head.Close(), st.dir.remove())
}

// truncate drops, once a quarter of the longest retention has passed
// since the last time, the samples older than t (ms) minus the longest
// retention of the store's Sources; each Source hides its own older
// samples from its queries (see Source.querier).
func (st *store) truncate(t int64, logger *zap.Logger) {
	st.mu.Lock()
	keep := st.longest.Milliseconds()
	st.mu.Unlock()
	mint := t - keep
	hmin := st.head.MinTime()
	if hmin == math.MaxInt64 || mint <= hmin || mint-hmin < keep/4 {
		return
	}
	if !st.truncating.TryLock() {
		return
	}
	defer st.truncating.Unlock()
	if err := st.head.Truncate(mint); err != nil {
		logger.Warn("truncating the embedded tsdb head", zap.Error(err))
	}
}

// sourceQuerier reads one Source's series of a shared head: every Select
// matches its sourceLabel, whose value is id, and a query's own matchers
// on the label see it as absent. The series keep the label while the
// engine evaluates (all have the same value, so that no operation or
// match changes) and toVector drops it from the results: a query sees what
// it would see in a head of the Source's own. Dropping it from every
// series selected instead cost a copy of its labels per series and query,
// a fifth of the queries' CPU. It also raises every Select's start to the Source's
// retention floor: the head querier trims samples to the hints' range,
// not to its own.
type sourceQuerier struct {
	storage.Querier
	match *labels.Matcher
	floor int64
}

// Select implements storage.Querier.
func (q sourceQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	if hints != nil && hints.Start < q.floor {
		h := *hints
		h.Start = q.floor
		hints = &h
	}
	ms, ok := q.matchers(ms)
	if !ok {
		return storage.EmptySeriesSet()
	}
	return q.Querier.Select(ctx, sortSeries, hints, ms...)
}

// matchers returns ms with the Source's own matcher instead of any on
// sourceLabel: the series, as the queries see them, do not have it (its
// value is ""); ok is false when one of those can match nothing.
func (q sourceQuerier) matchers(ms []*labels.Matcher) (out []*labels.Matcher, ok bool) {
	out = make([]*labels.Matcher, 0, len(ms)+1)
	for _, m := range ms {
		if m.Name != sourceLabel {
			out = append(out, m)
		} else if !m.Matches("") {
			return nil, false
		}
	}
	return append(out, q.match), true
}

// LabelValues implements storage.Querier.
func (q sourceQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	ms, ok := q.matchers(ms)
	if name == sourceLabel || !ok {
		return nil, nil, nil
	}
	return q.Querier.LabelValues(ctx, name, hints, ms...)
}

// LabelNames implements storage.Querier.
func (q sourceQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	ms, ok := q.matchers(ms)
	if !ok {
		return nil, nil, nil
	}
	names, ann, err := q.Querier.LabelNames(ctx, hints, ms...)
	return slices.DeleteFunc(names, func(n string) bool { return n == sourceLabel }), ann, err
}
