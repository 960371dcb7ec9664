package e2e

// The fault matrix's incident rows: Guardian killed with SIGKILL in every
// phase of an incident (verifying and the database steps included), during
// the delivery of a notification and during a reload; a receiver that is
// slow or fails; a rollback command that hangs; a full state_dir. In every
// row: no rollback the configuration did not ask for, none twice, no
// incident or event lost, and the signal a human would want. The source
// rows (Prometheus down, slow, answering garbage, a flapping target) are in
// fault_source_test.go; docs/reliability.md tabulates both.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/incident"
	"github.com/rollback-guardian/guardian/testenv"
)

// reload asks the running Guardian to reload its configuration.
func (s *stack) reload() (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, s.apiURL+"/-/reload", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	return http.DefaultClient.Do(req)
}

// editConfig replaces old by new in the configuration file, each pair
// exactly once, and reloads it.
func (s *stack) editConfig(pairs ...string) {
	s.t.Helper()
	b, err := os.ReadFile(s.cfgPath)
	if err != nil {
		s.t.Fatal(err)
	}
	text := string(b)
	for i := 0; i+1 < len(pairs); i += 2 {
		if n := strings.Count(text, pairs[i]); n != 1 {
			s.t.Fatalf("the config has %q %d times, want once:\n%s", pairs[i], n, text)
		}
		text = strings.Replace(text, pairs[i], pairs[i+1], 1)
	}
	if err := os.WriteFile(s.cfgPath, []byte(text), 0o600); err != nil {
		s.t.Fatal(err)
	}
	testenv.Eventually(s.t, 20*time.Second, func() error {
		resp, err := s.reload()
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("reload: %d %s", resp.StatusCode, body)
		}
		return nil
	}, "the edited configuration to load")
}

// waitState waits until incident id is in state, and returns it.
func (s *stack) waitState(id int64, state incident.State) incident.Record {
	s.t.Helper()
	return s.waitIncident(id, state, 120*time.Second)
}

// countKeys counts the runs of each rollback step recorded by the scripts.
func (s *stack) countKeys() map[string]int {
	n := map[string]int{}
	for _, k := range s.rollbacks() {
		n[k]++
	}
	return n
}

// wantEvents waits until the receiver has every event of incident 1 in
// order and numbered without a gap.
func wantEvents(t *testing.T, rcv *receiver, want ...string) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		if got := rcv.types(); !inOrder(got, want) {
			return fmt.Errorf("events %v", got)
		}
		return rcv.sequence(1)
	}, "every event at the receiver")
}

// Killed while verifying the recovery: after the restart verification goes
// on where it was, the incident resolves, and the rollback ran once.
func TestFaultCrashWhileVerifying(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, external: true, rollback: "placeholder", approval: "auto"})
	s.setRollback(rollbackScript(t, s.dir, s.demoURL, 0))
	s.editConfig("stable_for: 3s", "stable_for: 15s")
	s.deploy("v2", 0.20)
	s.waitState(1, incident.Verifying)
	s.proc.crash()
	rec := s.waitState(1, incident.Resolved)
	if got := s.countKeys(); len(got) != 1 || got["incident-1/rollback.application"] != 1 {
		t.Fatalf("rollback runs %v, want the application step once", got)
	}
	if n := strings.Count(strings.Join(timelineTypes(rec), ","), "recovery.confirmed"); n != 1 {
		t.Fatalf("recovery confirmed %d times: %v", n, timelineTypes(rec))
	}
	wantEvents(t, rcv, "incident.declared", "rollback.started", "rollback.succeeded", "recovery.confirmed", "incident.resolved", "report.written")
}

// The application rollback does not help, so Guardian asks for the
// database step. Killed while that approval waits, and again while the
// database step runs: the approval is still pending after the restart (the
// database step is never automatic), the step runs once, its end is
// awaited, and the incident resolves.
func TestFaultCrashInDatabaseSteps(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, external: true, rollback: "placeholder", approval: "auto"})
	// The application step changes nothing; the database step (ten seconds
	// long) is what restores the service.
	s.setRollback(fmt.Sprintf(`echo "$GUARDIAN_IDEMPOTENCY_KEY" >> %s/rollbacks`, s.dir))
	s.editConfig(
		"    recovery:\n", fmt.Sprintf("      database:\n        command:\n          command: [sh, -c, %q]\n          timeout: 1m\n    recovery:\n",
			rollbackScript(t, s.dir, s.demoURL, 10*time.Second)),
		"      timeout: 1m\n      smoke:", "      timeout: 25s\n      smoke:")
	s.deploy("v2", 0.20)
	s.waitState(1, incident.DBAwaitingApproval)
	s.proc.crash()
	// Still waiting for a human after the restart, and nothing ran.
	rec := s.waitState(1, incident.DBAwaitingApproval)
	if got := s.countKeys(); got["incident-1/rollback.database"] != 0 {
		t.Fatalf("the database step ran without a go: %v", got)
	}
	if code := s.decide(1, "approve", apiToken, `{"reason":"the schema migration broke it"}`); code != 200 {
		t.Fatalf("approve the database step: %d", code)
	}
	testenv.EventuallyTrue(t, 30*time.Second, func() bool { return s.countKeys()["incident-1/rollback.database"] == 1 }, "the database step to start")
	if st := s.incident(1).State; st != incident.DBRollingBack {
		t.Fatalf("state %s while the database step runs", st)
	}
	s.proc.crash()
	rec = s.waitState(1, incident.Resolved)
	if got := s.countKeys(); got["incident-1/rollback.application"] != 1 || got["incident-1/rollback.database"] != 1 || len(got) != 2 {
		t.Fatalf("rollback runs %v, want each step once", got)
	}
	ended := commandEnded(t, s.dir)
	if rec.VerifyStartedAt == nil || rec.VerifyStartedAt.Before(ended) {
		t.Fatalf("verification of the database step started at %v, before the step ended at %s", rec.VerifyStartedAt, ended)
	}
	wantEvents(t, rcv, "incident.declared", "rollback.started", "recovery.failed", "approval.requested", "approval.granted",
		"rollback.started", "rollback.resumed", "recovery.confirmed", "incident.resolved")
}

// Killed while a notification is being delivered (the receiver holds it):
// after the restart every event arrives, in order and without a gap; the
// one in flight may arrive twice, with the same webhook-id.
func TestFaultCrashDuringDelivery(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	rcv.delay.Store(int64(3 * time.Second))
	s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, external: true, rollback: "placeholder"})
	s.setRollback(rollbackScript(t, s.dir, s.demoURL, 0))
	s.deploy("v2", 0.20)
	s.waitState(1, incident.AwaitingApproval)
	testenv.EventuallyTrue(t, 30*time.Second, func() bool { return rcv.inflight.Load() > 0 }, "a delivery in flight")
	s.proc.crash()
	rcv.delay.Store(0)
	if code := s.decide(1, "approve", apiToken, `{}`); code != 200 {
		t.Fatalf("approve: %d", code)
	}
	s.waitState(1, incident.Resolved)
	wantEvents(t, rcv, "incident.declared", "approval.requested", "approval.granted", "rollback.started", "recovery.confirmed", "incident.resolved")
	if n := s.countKeys()["incident-1/rollback.application"]; n != 1 {
		t.Fatalf("the rollback ran %d times", n)
	}
}

// Killed in the middle of a reload: the restart loads the new file, and the
// incident waiting for its go is still waiting, nothing run.
func TestFaultCrashDuringReload(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, external: true, rollback: "placeholder"})
	s.setRollback(rollbackScript(t, s.dir, s.demoURL, 0))
	s.deploy("v2", 0.20)
	s.waitState(1, incident.AwaitingApproval)
	b, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "stable_for: 3s", "stable_for: 4s", 1))
	if err := os.WriteFile(s.cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		if resp, err := s.reload(); err == nil {
			resp.Body.Close()
		}
	}()
	s.proc.crash()
	rec := s.waitState(1, incident.AwaitingApproval)
	if len(s.rollbacks()) != 0 || len(rec.Decisions) != 0 {
		t.Fatalf("something ran without a go: rollbacks %v, decisions %v", s.rollbacks(), rec.Decisions)
	}
	if code := s.decide(1, "approve", apiToken, `{}`); code != 200 {
		t.Fatalf("approve: %d", code)
	}
	s.waitState(1, incident.Resolved)
	if got := s.rollbacks(); len(got) != 1 {
		t.Fatalf("rollback runs %v", got)
	}
}

// A receiver that fails (500) and then answers too late (beyond the
// notifier's timeout) for a while: the incident goes on without it (the
// rollback is not held up by on-call's webhook), the failures are counted,
// and every event arrives once the receiver is back.
func TestFaultReceiverFailing(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	rcv.status.Store(http.StatusInternalServerError)
	s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, external: true, rollback: "placeholder", approval: "auto"})
	s.setRollback(rollbackScript(t, s.dir, s.demoURL, 0))
	s.deploy("v2", 0.20)
	retries := func() float64 {
		v, _ := strconv.ParseFloat(metricValue(t, s.apiURL, `guardian_notifications_total{receiver="oncall",result="retry"}`), 64)
		return v
	}
	s.waitState(1, incident.Resolved)
	if got := rcv.types(); len(got) != 0 || retries() < 1 {
		t.Fatalf("a failing receiver accepted %v; %v retries", got, retries())
	}
	// Now slow instead: later than the notifier's ten-second timeout.
	rcv.delay.Store(int64(12 * time.Second))
	rcv.status.Store(0)
	failed := retries()
	testenv.EventuallyTrue(t, 60*time.Second, func() bool { return retries() > failed }, "late answers to be counted as retries")
	rcv.delay.Store(0)
	wantEvents(t, rcv, "incident.declared", "rollback.started", "rollback.succeeded", "recovery.confirmed", "incident.resolved", "report.written")
	if n := len(s.rollbacks()); n != 1 {
		t.Fatalf("%d rollbacks", n)
	}
}

// A rollback command that hangs is killed at its timeout, with its whole
// process group; the step is failed, the incident escalated to a human, and
// the command is not run again, also after Guardian is killed.
func TestFaultExecutorHangs(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, external: true, rollback: "placeholder", approval: "auto"})
	pidFile := filepath.Join(s.dir, "hung.pid")
	s.setRollback(fmt.Sprintf(`echo "$GUARDIAN_IDEMPOTENCY_KEY" >> %s/rollbacks; sleep 3600 & echo $! > %s; wait`, s.dir, pidFile))
	s.editConfig("          timeout: 1m\n", "          timeout: 3s\n")
	s.deploy("v2", 0.20)
	rec := s.waitState(1, incident.Failed)
	a := rec.Actions["incident-1/rollback.application"]
	if a == nil || a.State != incident.ActionFailed || !strings.Contains(a.Error, "timed out") {
		t.Fatalf("action %+v", a)
	}
	wantEvents(t, rcv, "incident.declared", "rollback.started", "rollback.failed", "incident.escalated")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, 10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil }, "the command's child to be killed")
	// Killed now, the failed incident stays failed and nothing runs again.
	s.proc.crash()
	if rec := s.waitState(1, incident.Failed); rec.Actions["incident-1/rollback.application"].State != incident.ActionFailed {
		t.Fatalf("after the restart: %+v", rec.Actions)
	}
	// Ten more evaluations of the still bad version: nothing runs again.
	next := len(s.incident(1).Timeline)
	time.Sleep(10 * time.Second) // the fault's aftermath: evaluations that must not act
	if n := len(s.rollbacks()); n != 1 {
		t.Fatalf("the rollback ran %d times", n)
	}
	if n := len(s.incident(1).Timeline); n > next+2 {
		t.Fatalf("the failed incident grew by %d entries while the bad version served", n-next)
	}
}

// state_dir on a full file system: Guardian cannot save the incident, so it
// runs nothing (it saves before it acts), says so in the log and in
// /metrics, and declares the incident and rolls back once space is free.
func TestFaultStateDirFull(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("mounting a small tmpfs needs root")
		}
		t.Skip("mounting a small tmpfs needs root")
	}
	rcv := newReceiver(t)
	s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, external: true, rollback: "placeholder", approval: "auto"})
	s.setRollback(rollbackScript(t, s.dir, s.demoURL, 0))
	// Move the state onto a 4 MiB tmpfs, Guardian stopped.
	s.proc.stop(syscall.SIGTERM)
	data := filepath.Join(s.dir, "data")
	small := filepath.Join(s.dir, "small")
	if err := os.Mkdir(small, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", small).Run() })
	if out, err := exec.Command("cp", "-a", data+"/.", small).CombinedOutput(); err != nil {
		t.Fatalf("copy state: %v %s", err, out)
	}
	b, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.cfgPath, []byte(strings.Replace(string(b), "state_dir: "+data, "state_dir: "+small, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	s.proc.start()
	// Fill it up.
	filler := filepath.Join(small, "filler")
	if out, err := exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=64k").CombinedOutput(); err == nil {
		t.Fatalf("dd filled nothing: %s", out)
	}
	s.deploy("v2", 0.20)
	testenv.EventuallyTrue(t, 60*time.Second, func() bool {
		return strings.Contains(s.proc.logs.String(), "no space left on device")
	}, "the full disk to be logged")
	testenv.EventuallyTrue(t, 30*time.Second, func() bool {
		v, _ := strconv.ParseFloat(metricValue(t, s.apiURL, `guardian_store_errors_total{op="put"}`), 64)
		return v >= 1
	}, "store errors in /metrics")
	if n := len(s.rollbacks()); n != 0 {
		t.Fatalf("rolled back %d times without a saved incident", n)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s.waitState(1, incident.Resolved)
	if n := len(s.rollbacks()); n != 1 {
		t.Fatalf("rolled back %d times", n)
	}
}

// Killed while an incident is held (a person said no-go): after the
// restart it is still held, nothing ran, and the watch goes on.
func TestFaultCrashWhileHeld(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	s := startStack(t, modePrometheus, stackOpts{receiverURL: rcv.url, external: true, rollback: "placeholder"})
	s.setRollback(rollbackScript(t, s.dir, s.demoURL, 0))
	s.deploy("v2", 0.20)
	s.waitState(1, incident.AwaitingApproval)
	if code := s.decide(1, "deny", apiToken, `{"reason":"a feature flag is being turned off instead"}`); code != 200 {
		t.Fatalf("deny: %d", code)
	}
	s.waitState(1, incident.Held)
	s.proc.crash()
	rec := s.waitState(1, incident.Held)
	if len(s.rollbacks()) != 0 || len(rec.Decisions) != 1 || rec.Decisions[0].Approved {
		t.Fatalf("after the restart: rollbacks %v, decisions %+v", s.rollbacks(), rec.Decisions)
	}
	wantEvents(t, rcv, "incident.declared", "approval.requested", "approval.denied")
}
