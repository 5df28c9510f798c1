package container

import (
	"fmt"
	"os"
	"time"
)

// HULL_TRACE=1 prints the time of each setup step to stderr; it is how the
// start-up path is profiled without strace's distortion.
var (
	traceOn    = os.Getenv("HULL_TRACE") != ""
	traceStart = time.Now()
)

// Tracef is tracef for the command line.
func Tracef(format string, args ...any) { tracef(format, args...) }

func tracef(format string, args ...any) {
	if traceOn {
		fmt.Fprintf(os.Stderr, "[%7.3fms pid %d] %s\n", float64(time.Since(traceStart).Microseconds())/1000, os.Getpid(), fmt.Sprintf(format, args...))
	}
}
