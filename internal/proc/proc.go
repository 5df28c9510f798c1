// Package proc answers questions about processes from /proc: whether the
// process a pid file names still runs.
package proc

import (
	"os"
	"strconv"
	"strings"
)

// AliveFromFile reports whether the process whose pid is in pidFile runs
// and, when comm is not empty, has that command name. A zombie counts as
// gone: it has finished, whoever reaps it (on some machines pid 1 reaps
// late).
func AliveFromFile(pidFile, comm string) bool {
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return false
	}
	return Alive(pid, comm)
}

// Alive reports whether pid runs (not a zombie) with command name comm
// ("" for any).
func Alive(pid int, comm string) bool {
	// /proc/PID/stat is "PID (COMM) STATE …"; COMM may hold spaces.
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	name, rest, ok := strings.Cut(string(stat), ") ")
	if !ok || strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X") {
		return false
	}
	return comm == "" || strings.HasSuffix(name, "("+comm)
}
