//go:build !unix

package embedded

import (
	"io/fs"
	"os"
)

// lockFile does nothing where flock is missing.
func lockFile(*os.File) error { return nil }

// tryLock cannot tell a living Source's directory: it reports every one
// as held, so nothing is removed.
func tryLock(*os.File) (bool, error) { return false, nil }

// ownedByUs cannot tell the owner: it reports none.
func ownedByUs(fs.FileInfo) bool { return false }
