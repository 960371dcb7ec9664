package report

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rollback-guardian/guardian/incident"
)

// Paths are the files Write wrote; Invite is empty when no invite was
// given.
type Paths struct {
	Markdown string
	JSON     string
	HTML     string
	Invite   string
}

// Write writes r's report to dir as incident-<id>.md, incident-<id>.json
// and incident-<id>.html (with opts.Charts) and, when invite is not nil, the invite as incident-<id>-postmortem.ics.
// dir is created (0750) if needed. Each file is written to a temporary file
// in dir, synced and renamed over its name, so a reader sees the old or the
// new file, never a part. The reports carry the same generation time.
func Write(dir string, r incident.Record, opts Options, invite []byte) (Paths, error) {
	if err := checkRecord(r); err != nil {
		return Paths{}, err
	}
	now := opts.now()
	opts.Now = func() time.Time { return now }
	md, err := Markdown(r, opts)
	if err != nil {
		return Paths{}, err
	}
	js, err := JSON(r, opts)
	if err != nil {
		return Paths{}, err
	}
	page, err := HTML(r, opts)
	if err != nil {
		return Paths{}, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Paths{}, fmt.Errorf("creating report directory %s: %w", dir, err)
	}
	base := fmt.Sprintf("incident-%d", r.ID)
	p := Paths{
		Markdown: filepath.Join(dir, base+".md"),
		JSON:     filepath.Join(dir, base+".json"),
		HTML:     filepath.Join(dir, base+".html"),
	}
	if err := writeAtomic(p.Markdown, md); err != nil {
		return Paths{}, err
	}
	if err := writeAtomic(p.JSON, js); err != nil {
		return Paths{}, err
	}
	if err := writeAtomic(p.HTML, page); err != nil {
		return Paths{}, err
	}
	if invite != nil {
		p.Invite = filepath.Join(dir, base+"-postmortem.ics")
		if err := writeAtomic(p.Invite, invite); err != nil {
			return Paths{}, err
		}
	}
	syncDir(dir)
	return p, nil
}

// writeAtomic writes data to path through a synced temporary file in the
// same directory and a rename.
func writeAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Chmod(0o640); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s: %w", path, err)
	}
	return nil
}

// syncDir makes the renames durable where the platform allows syncing a
// directory; failing that is not an error, the files are written.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
