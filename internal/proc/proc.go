// Package proc answers questions about processes from /proc: what
// /proc/PID/stat says of one, and whether the process a pid file names
// still runs.
package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stat is the part of /proc/PID/stat that hull reads.
type Stat struct {
	Comm      string // the command name, without its parentheses
	State     byte   // R, S, D, Z, X...
	PPid      int
	TTY       int    // tty_nr: major in bits 8-15 (and 20-31), minor in the rest
	UTime     uint64 // clock ticks in user mode
	STime     uint64 // and in kernel mode
	StartTime uint64 // clock ticks after boot: with the pid, names one process
}

// Gone reports a process that has finished (a zombie or dead), whoever
// reaps it (on some machines pid 1 reaps late).
func (s Stat) Gone() bool { return s.State == 'Z' || s.State == 'X' }

// ReadStat parses /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	// "PID (COMM) STATE ...": COMM may hold spaces and parentheses, so the
	// fields start after the last ')'.
	s := string(raw)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return Stat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state); ppid is 4, tty_nr 7, utime 14, stime 15,
	// starttime 22.
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	st := Stat{Comm: s[open+1 : end], State: f[0][0]}
	st.PPid, _ = strconv.Atoi(f[1])
	st.TTY, _ = strconv.Atoi(f[4])
	st.UTime, _ = strconv.ParseUint(f[11], 10, 64)
	st.STime, _ = strconv.ParseUint(f[12], 10, 64)
	st.StartTime, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

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
	st, err := ReadStat(pid)
	if err != nil || st.Gone() {
		return false
	}
	return comm == "" || st.Comm == comm
}
