package testenv

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// Chromium returns the path of a Chromium or Chrome binary: $GUARDIAN_CHROMIUM,
// else the first of chromium, chromium-browser, google-chrome-stable and
// google-chrome on the PATH. It skips the test when there is none, or
// fails it when CI is set.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("GUARDIAN_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Chromium is required in CI but not installed (scripts/deps.sh installs it)")
	}
	t.Skip("Chromium not installed (scripts/deps.sh installs it; or set GUARDIAN_CHROMIUM)")
	return ""
}

// Browser is a headless Chromium driven over the DevTools protocol, which
// records what its pages write to the console.
type Browser struct {
	// Ctx runs actions in the browser's tab: chromedp.Run(b.Ctx, ...).
	Ctx context.Context

	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
}

// StartBrowser starts headless Chromium with a window of width×height
// pixels, without its sandbox (containers seldom allow it) and with a
// profile of its own, and stops it at cleanup.
func StartBrowser(t testing.TB, width, height int) *Browser {
	t.Helper()
	bin := Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(width, height),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &Browser{Ctx: ctx}
	// The first run starts the browser; it must not have a deadline.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting %s: %v", bin, err)
	}
	done := make(chan struct{})
	msgs := chromedp.Console(ctx)
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.messages = append(b.messages, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		<-done
	})
	return b
}

// Problems returns the errors and uncaught exceptions the pages wrote to
// the console (browser log entries such as a refused resource or a
// Content-Security-Policy violation included) since the last call.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.messages {
		if m.Type == chromedp.ConsoleError || m.IsException() {
			out = append(out, m.String()+" at "+m.URL)
		}
	}
	b.messages = nil
	return out
}
