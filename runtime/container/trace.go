package container

import (
	"fmt"
	"os"
	"time"
)

// Each setup step can be traced with its time since start-up: HULL_TRACE=1
// prints them to stderr (how the start-up path is profiled without
// strace's distortion), and TraceTo sends them elsewhere (hull-runc --debug
// sends them to its log).
var (
	traceStart = time.Now()
	traceSink  func(string)
)

func init() {
	if os.Getenv("HULL_TRACE") != "" {
		traceSink = func(line string) { fmt.Fprintln(os.Stderr, line) }
	}
}

// TraceTo directs step traces to sink (nil turns them off).
func TraceTo(sink func(string)) { traceSink = sink }

// Tracef records a step of the caller's own.
func Tracef(format string, args ...any) { tracef(format, args...) }

func tracef(format string, args ...any) {
	if traceSink != nil {
		traceSink(fmt.Sprintf("[%7.3fms pid %d] %s", float64(time.Since(traceStart).Microseconds())/1000, os.Getpid(), fmt.Sprintf(format, args...)))
	}
}
