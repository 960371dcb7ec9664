package app

import (
	"os"
	"runtime/debug"
	"testing"
)

func TestSetGCDefault(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)

	t.Setenv("GOGC", "")
	// Set, even empty: the runtime's reading of it stands.
	debug.SetGCPercent(120)
	if got := SetGCDefault(); got != 120 {
		t.Errorf("with GOGC set: %d, want the runtime's 120 kept", got)
	}
	if got := debug.SetGCPercent(120); got != 120 {
		t.Errorf("with GOGC set the target became %d", got)
	}
}

func TestSetGCDefaultUnset(t *testing.T) {
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	t.Setenv("GOGC", "x") // restored after the test
	if err := os.Unsetenv("GOGC"); err != nil {
		t.Fatal(err)
	}
	if got := SetGCDefault(); got != DefaultGOGC {
		t.Errorf("without GOGC: %d, want %d", got, DefaultGOGC)
	}
	if got := debug.SetGCPercent(100); got != DefaultGOGC {
		t.Errorf("without GOGC the target is %d, want %d", got, DefaultGOGC)
	}
}
