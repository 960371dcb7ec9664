package embedded

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// chunkDirPrefix starts the name of every Source's chunk directory.
const chunkDirPrefix = "guardian-embedded-"

// lockName is the file in a chunk directory that its Source keeps locked
// while it lives.
const lockName = "lock"

// staleAfter is how long a chunk directory is left alone after its last
// change: long enough for a Source being made to lock it.
const staleAfter = time.Minute

// chunkDir is a Source's chunk directory, locked while it is in use.
type chunkDir struct {
	path string
	lock *os.File // nil where locks are not supported
}

// newChunkDir creates a chunk directory under parent (os.TempDir() when
// empty) and locks it.
func newChunkDir(parent string) (*chunkDir, error) {
	path, err := os.MkdirTemp(parent, chunkDirPrefix)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(path, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		if err = lockFile(f); err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		_ = os.RemoveAll(path)
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return &chunkDir{path: path, lock: f}, nil
}

// remove removes the directory, then releases its lock.
func (d *chunkDir) remove() error {
	err := os.RemoveAll(d.path)
	if d.lock != nil {
		_ = d.lock.Close()
	}
	return err
}

// RemoveStale removes from dir the chunk directories that no Source uses
// any more: those a crashed Guardian, or a start that failed after making
// its sources, left behind. It removes only directories named like a chunk
// directory, owned by this process's user, unchanged for a minute and not
// locked by a living Source of any process (a Guardian shares its
// state_dir with the Sources of a second one that starts, fails to lock
// the state file and ends). Where file locks are not supported it removes
// nothing. It returns how many it removed.
func RemoveStale(dir string, logger *zap.Logger) (int, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("removing stale chunk directories: %w", err)
	}
	removed := 0
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), chunkDirPrefix) {
			continue // symbolic links included: never followed
		}
		path := filepath.Join(dir, e.Name())
		fi, err := e.Info()
		if err != nil || !ownedByUs(fi) || time.Since(fi.ModTime()) < staleAfter {
			continue
		}
		ok, err := removeIfUnlocked(path)
		switch {
		case err != nil:
			errs = append(errs, err)
		case ok:
			removed++
			logger.Info("Removed a stale chunk directory", zap.String("dir", path))
		}
	}
	return removed, errors.Join(errs...)
}

// removeIfUnlocked removes path unless a Source holds its lock; a
// directory without a lock file is a leftover of an older Guardian.
func removeIfUnlocked(path string) (bool, error) {
	f, err := os.Open(filepath.Join(path, lockName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, err
	default:
		defer f.Close()
		held, err := tryLock(f)
		if err != nil || !held {
			return false, err
		}
	}
	if err := os.RemoveAll(path); err != nil {
		return false, err
	}
	return true, nil
}

// swept holds the directories New has swept of stale chunk directories in
// this process: once per directory is enough.
var swept sync.Map

// removeStaleOnce runs RemoveStale on dir the first time it is called
// with dir, logging a failure.
func removeStaleOnce(dir string, logger *zap.Logger) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return
	}
	if _, done := swept.LoadOrStore(abs, true); done {
		return
	}
	if _, err := RemoveStale(abs, logger); err != nil {
		logger.Warn("Could not remove stale chunk directories", zap.Error(err))
	}
}
