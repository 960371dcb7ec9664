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
	"os"
	"path/filepath"
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

var (
	dataBucket   = []byte("data")
	metaBucket   = []byte("meta")
	schemaKey    = []byte("schema")
	schemaV1     = []byte("1")
	revisionSize = 8
)

// Store is a store.Store in one bbolt file.
type Store struct {
	db     *bbolt.DB
	path   string
	logger *zap.Logger
}

var _ store.Store = (*Store)(nil)

// Open opens or creates the state file at path (mode 0600, its directory
// 0700), waiting at most DefaultOpenTimeout for the lock.
func Open(path string, logger *zap.Logger) (*Store, error) {
	return OpenTimeout(path, DefaultOpenTimeout, logger)
}

// OpenTimeout is Open with a lock timeout. bbolt waits forever for a lock
// held by another process; a positive timeout turns that into ErrLocked.
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
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: timeout})
	if errors.Is(err, bberrors.ErrTimeout) {
		return nil, fmt.Errorf("state file %s is %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("opening state file %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
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
	logger.Info("Opened state file", zap.String("path", path))
	return &Store{db: db, path: path, logger: logger}, nil
}

// Path returns the state file's path.
func (s *Store) Path() string { return s.path }

// Get returns the value of key in bucket, or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, bucket, key string) (store.KV, error) {
	if err := check(ctx, bucket, &key); err != nil {
		return store.KV{}, err
	}
	var kv store.KV
	err := s.db.View(func(tx *bbolt.Tx) error {
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
	err := s.db.Update(func(tx *bbolt.Tx) error {
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
	err := s.db.Update(func(tx *bbolt.Tx) error {
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
	err := s.db.View(func(tx *bbolt.Tx) error {
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
	err := s.db.Update(func(tx *bbolt.Tx) error {
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

// Close closes the file and releases its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing state file %s: %w", s.path, err)
	}
	return nil
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
	obj := "bucket " + bucket
	if key != "" {
		obj = "key " + bucket + "/" + key
	}
	return fmt.Errorf("%s %s in %s: %w", op, obj, s.path, err)
}
