package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/rollback-guardian/guardian/config"
	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/notify"
	"github.com/rollback-guardian/guardian/store/bolt"
)

// stateFileName is the state file's name in state_dir.
const stateFileName = "guardian.db"

const stateLong = `Check or back up Guardian's state file, STATE_DIR/guardian.db, which holds the incidents,
the notifications waiting to be delivered and what Guardian learnt about each service.

The file is found with --file, else in --state-dir, else in the state_dir of --config.
It is opened read-only, but a running Guardian holds its lock: stop Guardian first.
A command waits --lock-timeout for the lock, then fails with "locked by another guardian
process". (With global.cluster the state is in Kubernetes ConfigMaps, not in this file.)

To restore a backup: stop Guardian, check the backup (guardian state check --file BACKUP),
copy it over STATE_DIR/guardian.db (mode 0600) and start Guardian.`

// stateFlags locate the state file.
type stateFlags struct {
	file, dir, configFile string
	lockTimeout           time.Duration
}

func (f *stateFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.file, "file", "", "the state file itself (a backup, say)")
	cmd.Flags().StringVar(&f.dir, "state-dir", "", "the state directory (the file is STATE_DIR/"+stateFileName+")")
	configFlag(cmd, &f.configFile, "configuration file whose global.state_dir holds the file")
	cmd.Flags().DurationVar(&f.lockTimeout, "lock-timeout", 5*time.Second, "how long to wait for the file's lock")
}

// path returns the state file's path.
func (f *stateFlags) path() (string, error) {
	switch {
	case f.file != "":
		return f.file, nil
	case f.dir != "":
		return filepath.Join(f.dir, stateFileName), nil
	}
	cfg, _, err := config.LoadFile(f.configFile)
	if err != nil {
		return "", fmt.Errorf("finding the state file (--file, --state-dir or --config.file): %w", err)
	}
	if cfg.Global.Cluster != nil {
		return "", fmt.Errorf("%s: global.cluster keeps the state in Kubernetes ConfigMaps, not in a state file", f.configFile)
	}
	return filepath.Join(cfg.Global.StateDir, stateFileName), nil
}

// open opens the state file read-only; the open checks it.
func (f *stateFlags) open() (*bolt.Store, error) {
	path, err := f.path()
	if err != nil {
		return nil, err
	}
	s, err := bolt.OpenReadOnly(path, f.lockTimeout, zap.NewNop())
	switch {
	case errors.Is(err, bolt.ErrLocked):
		return nil, fmt.Errorf("%w: stop Guardian first (it holds the lock while it runs)", err)
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no state file at %s (Guardian makes it when it first starts with this state_dir)", path)
	}
	return s, err
}

func newStateCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:           "state",
		Short:         "Check or back up the state file (with Guardian stopped)",
		Long:          stateLong,
		Args:          args(0, 0),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.AddCommand(newStateCheckCmd(stdout, stderr), newStateBackupCmd(stdout))
	return cmd
}

func newStateCheckCmd(stdout, stderr io.Writer) *cobra.Command {
	var sf stateFlags
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the state file's consistency and count what it holds",
		Long: "Check reads every page of the state file, runs bbolt's consistency check and counts the\n" +
			"incidents, their timeline entries, the notifications waiting and the other saved state.\n" +
			"It exits with status 1 when the file is damaged, listing what is wrong.\n\n" + stateLong,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			start := time.Now()
			s, err := sf.open()
			var cerr *bolt.CorruptError
			if errors.As(err, &cerr) {
				fmt.Fprintln(stderr, err)
				for _, d := range cerr.Details {
					fmt.Fprintln(stderr, "  "+d)
				}
				return errSilent
			}
			if err != nil {
				return err
			}
			defer s.Close()
			took := time.Since(start)
			buckets, err := s.Buckets(cmd.Context())
			if err != nil {
				return err
			}
			fi, err := os.Stat(s.Path())
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: OK (%s, checked in %s)\n", s.Path(), sizeOf(fi.Size()), took.Round(time.Microsecond))
			failed := false
			for _, b := range buckets {
				switch b.Name {
				case "incidents":
					line, err := incidentCounts(cmd, s)
					if err != nil {
						fmt.Fprintln(stderr, err)
						failed = true
						continue
					}
					fmt.Fprintln(stdout, "  "+line)
				case notify.OutboxBucket:
					fmt.Fprintf(stdout, "  outbox: %s waiting\n", plural(b.Keys, "notification"))
				default:
					fmt.Fprintf(stdout, "  %s: %s\n", b.Name, plural(b.Keys, "key"))
				}
			}
			if failed {
				return errSilent
			}
			return nil
		},
	}
	sf.register(cmd)
	return cmd
}

// incidentCounts decodes every incident and says how many there are, how
// many are open and how many timeline entries they hold.
func incidentCounts(cmd *cobra.Command, s *bolt.Store) (string, error) {
	kvs, err := s.List(cmd.Context(), "incidents")
	if err != nil {
		return "", err
	}
	open, entries := 0, 0
	for _, kv := range kvs {
		var r incident.Record
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return "", fmt.Errorf("%s: incident %s cannot be read: %w", s.Path(), kv.Key, err)
		}
		if r.State.Open() {
			open++
		}
		entries += len(r.Timeline)
	}
	return fmt.Sprintf("incidents: %d (%d open), %s", len(kvs), open, plural(entries, "timeline event")), nil
}

// sizeOf prints a file size.
func sizeOf(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d KiB", (n+1023)>>10)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func newStateBackupCmd(stdout io.Writer) *cobra.Command {
	var (
		sf    stateFlags
		to    string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "backup --to FILE",
		Short: "Copy the state file, checked, to FILE",
		Long: "Backup checks the state file and writes a consistent copy of it to FILE, which it then\n" +
			"checks too. FILE is written under a temporary name and renamed, so it is never half written;\n" +
			"an existing FILE is kept unless --force.\n\n" + stateLong,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return errors.New("--to is required")
			}
			if _, err := os.Lstat(to); err == nil && !force {
				return fmt.Errorf("%s exists: choose another name, or --force to replace it", to)
			}
			s, err := sf.open()
			if err != nil {
				return err
			}
			defer s.Close()
			n, err := backup(s, to, sf.lockTimeout)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: copied to %s (%s)\n", s.Path(), to, sizeOf(n))
			return nil
		},
	}
	sf.register(cmd)
	cmd.Flags().StringVar(&to, "to", "", "the copy's path (required)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing file")
	return cmd
}

// backup copies s to a temporary file beside to, checks the copy and
// renames it to to.
func backup(s *bolt.Store, to string, timeout time.Duration) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(to), "."+filepath.Base(to)+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	n, err := s.WriteTo(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("backup: writing %s: %w", tmp, err)
	}
	c, err := bolt.OpenReadOnly(tmp, timeout, zap.NewNop())
	if err != nil {
		return n, fmt.Errorf("backup: the copy does not check out: %w", err)
	}
	if err := c.Close(); err != nil {
		return n, err
	}
	if err := os.Rename(tmp, to); err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	done = true
	return n, nil
}
