// Package bolt implements store.Store over an embedded bbolt file, Guardian's
// default durable state: one file in the state directory, fsynced on every
// write, locked against a second Guardian process.
//
// Layout: the top-level bucket "data" holds one nested bucket per store
// bucket, whose values are an 8-byte big-endian revision followed by the
// caller's bytes; the nested bucket's bbolt sequence is its NextID. The
// top-level bucket "meta" holds the schema version, and its sequence is the
// store-wide revision counter, so revisions are never reused.
package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/store"
)

// DefaultOpenTimeout bounds how long Open waits for the file lock.
const DefaultOpenTimeout = 2 * time.Second

// ErrLocked means another process holds the state file.
var ErrLocked = errors.New("locked by another guardian process")

// ErrCorrupt means the state file cannot be read as it is: it is empty, cut
// short or damaged. The error is a *CorruptError, which says how to recover.
var ErrCorrupt = errors.New("state file corrupt")

// Recovery is what a CorruptError tells the operator to do.
const Recovery = "Restore it from a backup (made with guardian state backup) while Guardian is stopped, " +
	"or move it away to start with an empty state; guardian state check reports what is damaged"

// CorruptError says what is wrong with a state file and how to recover. It
// matches ErrCorrupt.
type CorruptError struct {
	Path string
	// Problem completes "state file Path ...", e.g. "is empty (0 bytes)".
	Problem string
	// Details lists what the consistency check found, when it ran.
	Details []string
}

// Error names the file, the problem and the way out.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("state file %s %s. %s", e.Path, e.Problem, Recovery)
}

// Is makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

var (
	dataBucket   = []byte("data")
	metaBucket   = []byte("meta")
	schemaKey    = []byte("schema")
	schemaV1     = []byte("1")
	revisionSize = 8
)

// maxDetails bounds the problems a CorruptError lists.
const maxDetails = 20

// Store is a store.Store in one bbolt file.
type Store struct {
	db      *bbolt.DB
	path    string
	logger  *zap.Logger
	checked time.Duration // how long the check at open took
	// broken is set when bbolt panicked: its memory (the map of the file,
	// its freelist) may be left half changed, so every later call fails
	// with this error rather than read through it.
	broken atomic.Pointer[CorruptError]
}

var _ store.Store = (*Store)(nil)

// Open opens or creates the state file at path (mode 0600, its directory
// 0700), waiting at most DefaultOpenTimeout for the lock.
func Open(path string, logger *zap.Logger) (*Store, error) {
	return OpenTimeout(path, DefaultOpenTimeout, logger)
}

// OpenTimeout is Open with a lock timeout. bbolt waits forever for a lock
// held by another process; a positive timeout turns that into ErrLocked.
//
// Only a missing file starts an empty state (logged at info level). An
// existing file is checked first (see Check): an empty (0-byte), truncated
// or damaged file is an ErrCorrupt error, never a fresh start, since the
// incidents it held would be silently forgotten.
func OpenTimeout(path string, timeout time.Duration, logger *zap.Logger) (*Store, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if timeout <= 0 {
		timeout = DefaultOpenTimeout
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("creating state directory %s: %w", dir, err)
		}
	}
	var checked time.Duration
	switch fi, err := os.Stat(path); {
	case errors.Is(err, fs.ErrNotExist):
		logger.Info("No state file: starting with an empty state", zap.String("path", path))
	case err != nil:
		return nil, fmt.Errorf("opening state file %s: %w", path, err)
	case fi.Size() == 0:
		return nil, &CorruptError{Path: path, Problem: "is empty (0 bytes): it was truncated, so the incidents open in it are lost"}
	default:
		// A read-only pass first: bbolt reads the freelist as it opens a
		// file for writing, and panics on a damaged one.
		ro, err := OpenReadOnly(path, timeout, logger)
		if err != nil {
			return nil, err
		}
		checked = ro.checked
		if err := ro.Close(); err != nil {
			return nil, err
		}
	}
	db, err := openDB(path, false, true, timeout)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, path: path, logger: logger}
	err = s.update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(dataBucket); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		switch v := meta.Get(schemaKey); {
		case v == nil:
			return meta.Put(schemaKey, schemaV1)
		case string(v) != string(schemaV1):
			return fmt.Errorf("unsupported schema version %q (this Guardian reads %q)", v, schemaV1)
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("initialising state file %s: %w", path, err)
	}
	logger.Info("Opened state file", zap.String("path", path), zap.Duration("check", checked))
	return s, nil
}

// OpenReadOnly opens an existing state file for reading, sharing the lock
// with other readers, and checks it (see Check). A Guardian running on the
// file holds its lock exclusively: OpenReadOnly then gives up after timeout
// with ErrLocked. Writes to the returned store fail.
func OpenReadOnly(path string, timeout time.Duration, logger *zap.Logger) (*Store, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	if timeout <= 0 {
		timeout = DefaultOpenTimeout
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("opening state file: %w", err)
	}
	if fi.Size() == 0 {
		return nil, &CorruptError{Path: path, Problem: "is empty (0 bytes): it was truncated, so the incidents open in it are lost"}
	}
	start := time.Now()
	// The file's size first, before bbolt reads a page it may lack.
	db, err := openDB(path, true, false, timeout)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, path: path, logger: logger}
	err = s.view(func(tx *bbolt.Tx) error {
		if err := s.checkSize(tx); err != nil {
			return err
		}
		return s.checkRaw(tx)
	})
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing state file %s: %w", path, cerr)
	}
	if err != nil {
		return nil, err
	}
	if db, err = openDB(path, true, true, timeout); err != nil {
		return nil, err
	}
	s.db = db
	if err := s.Check(); err != nil {
		_ = db.Close()
		return nil, err
	}
	s.checked = time.Since(start)
	return s, nil
}

// openDB opens path with bbolt, turning its panics and memory faults on a
// damaged file into a CorruptError. preload reads the freelist now (bbolt
// always does for writing).
func openDB(path string, readOnly, preload bool, timeout time.Duration) (*bbolt.DB, error) {
	var file *os.File
	opts := &bbolt.Options{
		Timeout:  timeout,
		ReadOnly: readOnly,
		// Read the freelist now, under guard, not in the consistency
		// check's goroutine.
		PreLoadFreelist: preload,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			if file == nil {
				file = f
			}
			return f, err
		},
	}
	var db *bbolt.DB
	err := guard(func() (err error) {
		db, err = bbolt.Open(path, 0o600, opts)
		return err
	})
	var p *panicError
	switch {
	case err == nil:
		return db, nil
	case errors.As(err, &p):
		// bbolt panicked with the file open and locked: release them (its
		// memory map stays until the process ends).
		if file != nil {
			_ = file.Close()
		}
		return nil, &CorruptError{Path: path, Problem: fmt.Sprintf("is corrupt (%v), so incidents in it may be lost", p.v)}
	case errors.Is(err, bberrors.ErrTimeout):
		return nil, fmt.Errorf("state file %s is %w", path, ErrLocked)
	case errors.Is(err, bberrors.ErrInvalid), errors.Is(err, bberrors.ErrChecksum), errors.Is(err, bberrors.ErrVersionMismatch):
		return nil, &CorruptError{Path: path, Problem: fmt.Sprintf("is corrupt or not a state file (%v)", err)}
	case errors.As(err, new(*fs.PathError)), errors.As(err, new(syscall.Errno)):
		// The system refused (permissions, memory...): the file may be fine.
		return nil, fmt.Errorf("opening state file %s: %w", path, err)
	}
	// bbolt's own complaints about the file, such as "file size too small".
	return nil, &CorruptError{Path: path, Problem: fmt.Sprintf("is corrupt (%v), so incidents in it may be lost", err)}
}

// Check reads the whole state file and runs bbolt's consistency check
// (every page reachable or free, once; keys in order). It first reads the
// pages as bytes (see checkPages), then every key and value under guard,
// and only then lets bbolt's check, which trusts the pages, run. It returns a
// *CorruptError listing what it found, or nil. It reads every page: about
// 3ms for a thousand incidents (a 2 MiB file).
func (s *Store) Check() error {
	var details []string
	add := func(format string, args ...any) {
		if len(details) < maxDetails {
			details = append(details, fmt.Sprintf(format, args...))
		}
	}
	// bbolt's check reads the freelist, which a writer changes: in a
	// writable store it runs in a write transaction, rolled back.
	run := s.view
	if !s.db.IsReadOnly() {
		run = s.inWriteTx
	}
	err := run(func(tx *bbolt.Tx) error {
		if err := s.checkSize(tx); err != nil {
			return err
		}
		if err := s.checkRaw(tx); err != nil {
			return err
		}
		// Walk everything under guard first: the consistency check runs
		// in a goroutine of bbolt's, where a fault would end the process,
		// and trusts each page's length.
		if err := scanPages(tx, add); err != nil || len(details) > 0 {
			return err
		}
		if err := walk(tx, add); err != nil {
			return err
		}
		if len(details) > 0 {
			return nil
		}
		for err := range tx.Check() {
			add("%v", err)
		}
		return nil
	})
	if err != nil || len(details) == 0 {
		return err
	}
	problem := "is corrupt (" + details[0]
	if len(details) > 1 {
		problem += fmt.Sprintf(", and %d more problems", len(details)-1)
	}
	return &CorruptError{Path: s.path, Problem: problem + "), so incidents in it may be lost", Details: details}
}

// checkSize returns a CorruptError if the file is shorter than the pages
// tx sees.
func (s *Store) checkSize(tx *bbolt.Tx) error {
	fi, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("checking state file: %w", err)
	}
	if need := tx.Size(); need > fi.Size() {
		return &CorruptError{Path: s.path, Problem: fmt.Sprintf("is truncated (%d bytes, its pages need %d), so incidents in it may be lost", fi.Size(), need)}
	}
	return nil
}

// checkRaw reads the pages tx sees as bytes (see checkPages) and returns a
// CorruptError listing their damage.
func (s *Store) checkRaw(tx *bbolt.Tx) error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("checking state file: %w", err)
	}
	defer f.Close()
	var details []string
	add := func(format string, args ...any) {
		if len(details) < maxDetails {
			details = append(details, fmt.Sprintf(format, args...))
		}
	}
	ps := tx.DB().Info().PageSize
	root := uint64(tx.Cursor().Bucket().RootPage())
	txid := uint64(tx.ID())
	if tx.Writable() {
		txid-- // the committed meta page's
	}
	if err := checkPages(f, ps, uint64(tx.Size())/uint64(ps), root, txid, add); err != nil {
		return err
	}
	if len(details) == 0 {
		return nil
	}
	problem := "is corrupt (" + details[0]
	if len(details) > 1 {
		problem += fmt.Sprintf(", and %d more problems", len(details)-1)
	}
	return &CorruptError{Path: s.path, Problem: problem + "), so incidents in it may be lost", Details: details}
}

// scanPages checks the header of every page below the high water mark: a
// page in use has a known type and ends below the mark.
func scanPages(tx *bbolt.Tx, add func(format string, args ...any)) error {
	hwm := int(tx.Size() / int64(tx.DB().Info().PageSize))
	for id := 2; id < hwm; {
		info, err := tx.Page(id)
		if err != nil || info == nil {
			return err
		}
		switch info.Type {
		case "free":
			id++
			continue
		case "branch", "leaf", "meta", "freelist":
		default:
			add("page %d: unknown type %s", id, info.Type)
			return nil
		}
		if info.OverflowCount >= hwm-id {
			add("page %d: %d overflow pages, past the end of the file's %d pages", id, info.OverflowCount, hwm)
			return nil
		}
		id += 1 + info.OverflowCount
	}
	return nil
}

// maxDepth is the deepest bucket nesting Guardian writes (data/<bucket>),
// with a margin; a deeper one is damage, perhaps a bucket inside itself.
const maxDepth = 4

// walk reads every key and value of the file, checking Guardian's layout
// where it exists, and reports problems to add.
func walk(tx *bbolt.Tx, add func(format string, args ...any)) error {
	var sink uint32
	var visit func(b *bbolt.Bucket, name string, depth int)
	visit = func(b *bbolt.Bucket, name string, depth int) {
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			sink += crc32.ChecksumIEEE(k)
			if v == nil {
				if child := b.Bucket(k); child != nil {
					if depth+1 >= maxDepth {
						add("bucket %s/%s: nested deeper than Guardian writes", name, k)
						continue
					}
					visit(child, name+"/"+string(k), depth+1)
					continue
				}
			}
			sink += crc32.ChecksumIEEE(v)
			// The values of the store's buckets start with their revision.
			if depth == 1 && strings.HasPrefix(name, string(dataBucket)+"/") && len(v) < revisionSize {
				add("key %s/%s: %d bytes, shorter than its revision", name, k, len(v))
			}
		}
	}
	err := tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
		visit(b, string(name), 0)
		return nil
	})
	_ = sink
	return err
}

// Path returns the state file's path.
func (s *Store) Path() string { return s.path }

// Get returns the value of key in bucket, or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, bucket, key string) (store.KV, error) {
	if err := check(ctx, bucket, &key); err != nil {
		return store.KV{}, err
	}
	var kv store.KV
	err := s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(dataBucket).Bucket([]byte(bucket))
		if b == nil {
			return store.ErrNotFound
		}
		raw := b.Get([]byte(key))
		if raw == nil {
			return store.ErrNotFound
		}
		var err error
		kv, err = decode(key, raw)
		return err
	})
	if err != nil {
		return store.KV{}, s.wrap("getting", bucket, key, err)
	}
	return kv, nil
}

// Put writes value if the stored revision equals rev (0: must not exist),
// returning the new revision, or store.ErrConflict.
func (s *Store) Put(ctx context.Context, bucket, key string, value []byte, rev uint64) (uint64, error) {
	if err := check(ctx, bucket, &key); err != nil {
		return 0, err
	}
	var next uint64
	err := s.update(func(tx *bbolt.Tx) error {
		b, err := tx.Bucket(dataBucket).CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		var cur uint64
		if raw := b.Get([]byte(key)); raw != nil {
			kv, err := decode(key, raw)
			if err != nil {
				return err
			}
			cur = kv.Revision
		}
		if cur != rev {
			return store.ErrConflict
		}
		next, err = tx.Bucket(metaBucket).NextSequence()
		if err != nil {
			return err
		}
		buf := make([]byte, revisionSize+len(value))
		binary.BigEndian.PutUint64(buf, next)
		copy(buf[revisionSize:], value)
		return b.Put([]byte(key), buf)
	})
	if err != nil {
		return 0, s.wrap("putting", bucket, key, err)
	}
	return next, nil
}

// Delete removes key from bucket; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, bucket, key string) error {
	if err := check(ctx, bucket, &key); err != nil {
		return err
	}
	err := s.update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(dataBucket).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(key))
	})
	if err != nil {
		return s.wrap("deleting", bucket, key, err)
	}
	return nil
}

// List returns every value of bucket, ordered by key.
func (s *Store) List(ctx context.Context, bucket string) ([]store.KV, error) {
	if err := check(ctx, bucket, nil); err != nil {
		return nil, err
	}
	var out []store.KV
	err := s.view(func(tx *bbolt.Tx) error {
		b := tx.Bucket(dataBucket).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			kv, err := decode(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, kv)
			return nil
		})
	})
	if err != nil {
		return nil, s.wrap("listing", bucket, "", err)
	}
	if out == nil {
		out = []store.KV{}
	}
	return out, nil
}

// NextID returns the next number of bucket's sequence, starting at 1.
func (s *Store) NextID(ctx context.Context, bucket string) (uint64, error) {
	if err := check(ctx, bucket, nil); err != nil {
		return 0, err
	}
	var id uint64
	err := s.update(func(tx *bbolt.Tx) error {
		b, err := tx.Bucket(dataBucket).CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		id, err = b.NextSequence()
		return err
	})
	if err != nil {
		return 0, s.wrap("allocating an id in", bucket, "", err)
	}
	return id, nil
}

// BucketInfo describes one bucket of the store.
type BucketInfo struct {
	Name string
	// Keys is the number of keys.
	Keys int
	// Sequence is the last number NextID handed out (0: never used).
	Sequence uint64
}

// Buckets describes the store's buckets, ordered by name.
func (s *Store) Buckets(ctx context.Context) ([]BucketInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []BucketInfo
	err := s.view(func(tx *bbolt.Tx) error {
		data := tx.Bucket(dataBucket)
		if data == nil {
			return nil
		}
		return data.ForEachBucket(func(name []byte) error {
			b := data.Bucket(name)
			info := BucketInfo{Name: string(name), Sequence: b.Sequence()}
			if err := b.ForEach(func(_, _ []byte) error { info.Keys++; return nil }); err != nil {
				return err
			}
			out = append(out, info)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("listing the buckets of %s: %w", s.path, err)
	}
	return out, nil
}

// WriteTo writes a consistent copy of the state file to w, as of one
// moment: writes made meanwhile wait for nothing and are not in it. The
// copy is a state file Guardian can open.
func (s *Store) WriteTo(w io.Writer) (int64, error) {
	var n int64
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("copying state file %s: %w", s.path, err)
	}
	return n, nil
}

// Close closes the file and releases its lock.
func (s *Store) Close() error {
	err := guard(s.db.Close)
	if _, ok := err.(*panicError); ok {
		return &CorruptError{Path: s.path, Problem: fmt.Sprintf("is corrupt (%v), so incidents in it may be lost", err)}
	}
	if err != nil {
		return fmt.Errorf("closing state file %s: %w", s.path, err)
	}
	return nil
}

// view runs fn in a read transaction under guard.
func (s *Store) view(fn func(*bbolt.Tx) error) error {
	return s.guarded(func() error { return s.db.View(fn) })
}

// update runs fn in a write transaction under guard.
func (s *Store) update(fn func(*bbolt.Tx) error) error {
	return s.guarded(func() error { return s.db.Update(fn) })
}

// inWriteTx runs fn in a write transaction that it rolls back.
func (s *Store) inWriteTx(fn func(*bbolt.Tx) error) error {
	return s.guarded(func() error {
		tx, err := s.db.Begin(true)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		return fn(tx)
	})
}

// guarded is guard, turning a panic into a CorruptError naming the file,
// which every later call returns.
func (s *Store) guarded(f func() error) error {
	if b := s.broken.Load(); b != nil {
		return b
	}
	err := guard(f)
	if p, ok := err.(*panicError); ok {
		cerr := &CorruptError{Path: s.path, Problem: fmt.Sprintf("is corrupt (%v), so incidents in it may be lost", p.v)}
		s.broken.CompareAndSwap(nil, cerr)
		s.logger.Error("State file damaged: refusing to use it further", zap.Error(cerr))
		return s.broken.Load()
	}
	return err
}

// panicError is a panic guard recovered.
type panicError struct{ v any }

func (p *panicError) Error() string { return fmt.Sprint("panic: ", p.v) }

// guard runs f, returning a panic as a *panicError. bbolt trusts the file:
// it panics on a page it cannot make sense of, and a damaged page number can
// point past the mapped file, which faults; guard makes the fault a panic
// too (debug.SetPanicOnFault).
func guard(f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{v: r}
		}
	}()
	return f()
}

func check(ctx context.Context, bucket string, key *string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := store.CheckBucket(bucket); err != nil {
		return err
	}
	if key != nil {
		return store.CheckKey(*key)
	}
	return nil
}

// decode splits a raw value into its revision and a copy of the caller's
// bytes (bbolt's slices are only valid inside the transaction).
func decode(key string, raw []byte) (store.KV, error) {
	if len(raw) < revisionSize {
		return store.KV{}, fmt.Errorf("corrupt value: %d bytes, shorter than its revision", len(raw))
	}
	v := make([]byte, len(raw)-revisionSize)
	copy(v, raw[revisionSize:])
	return store.KV{Key: key, Value: v, Revision: binary.BigEndian.Uint64(raw)}, nil
}

// wrap names the object in err, keeping the sentinels for errors.Is; the
// sentinels themselves come back bare enough to read well.
func (s *Store) wrap(op, bucket, key string, err error) error {
	if errors.Is(err, bberrors.ErrDatabaseNotOpen) {
		err = store.ErrClosed
	}
	if errors.Is(err, ErrCorrupt) {
		// The error names the file already.
		return fmt.Errorf("%s %s: %w", op, objName(bucket, key), err)
	}
	return fmt.Errorf("%s %s in %s: %w", op, objName(bucket, key), s.path, err)
}

func objName(bucket, key string) string {
	if key != "" {
		return "key " + bucket + "/" + key
	}
	return "bucket " + bucket
}
