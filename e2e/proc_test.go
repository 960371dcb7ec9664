package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollback-guardian/guardian/testenv"
)

// binaries are built once per test run.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// bins builds guardian and demo-service into a temporary directory.
func bins(t testing.TB) (guardian, demoService string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "guardian-e2e-bin-")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"guardian", "demo-service"} {
			// The faultpoints tag lets a test crash Guardian at a named
			// point (GUARDIAN_FAULT); it does nothing otherwise.
			out, err := exec.Command("go", "build", "-tags", "faultpoints", "-o", filepath.Join(binDir, pkg), "../cmd/"+pkg).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "guardian"), filepath.Join(binDir, "demo-service")
}

// guardianProc is Guardian run as its own process, to be killed and restarted.
type guardianProc struct {
	t    testing.TB
	bin  string
	cfg  string
	addr string
	url  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *testenv.Buffer
	// env is added to Guardian's environment at the next start.
	env []string
}

func startProc(t testing.TB, cfg string) *guardianProc {
	t.Helper()
	bin, _ := bins(t)
	p := &guardianProc{t: t, bin: bin, cfg: cfg, addr: testenv.FreePort(t), logs: &testenv.Buffer{}}
	p.url = "http://" + p.addr
	// The listen address goes into the config file.
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "global:\n", "global:\n  listen_address: "+p.addr+"\n", 1))
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("guardian output:\n%s", p.logs.String())
		}
	})
	p.start()
	return p
}

func (p *guardianProc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.bin, "run", "--config", p.cfg, "--log.format=json", "--log.level=debug")
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(p.done)
	testenv.WaitHTTP(p.t, p.url+"/-/ready", 30*time.Second)
}

// stop signals the process and waits for it.
func (p *guardianProc) stop(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// exited waits until Guardian exits by itself (at a fault point, say).
func (p *guardianProc) exited(timeout time.Duration) {
	p.t.Helper()
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
	case <-time.After(timeout):
		p.t.Fatalf("guardian still running after %s", timeout)
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
}

// crash kills Guardian with SIGKILL and starts it again on the same state.
func (p *guardianProc) crash() {
	p.t.Helper()
	p.stop(syscall.SIGKILL)
	fmt.Fprintf(p.logs, "---- SIGKILL, restarting ----\n")
	p.start()
}

// getJSON GETs an API path into v.
func (s *stack) getJSON(path string, v any) error {
	resp, err := http.Get(s.apiURL + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return json.Unmarshal(b, v)
}
