//go:build linux

package command

import (
	"os"
	"strconv"
	"strings"
)

// startTicks is the start time of process pid in clock ticks since boot
// (field 22 of /proc/<pid>/stat), or 0 when it cannot be read.
func startTicks(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0
	}
	t, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0
	}
	return t
}

// running reports whether process pid still runs and is the one that
// started at ticks (a zombie counts as gone).
func running(pid int, ticks uint64) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return false
	}
	return ticks == 0 || f[19] == strconv.FormatUint(ticks, 10)
}
