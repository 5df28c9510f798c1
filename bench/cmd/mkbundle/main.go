// Command mkbundle writes an OCI bundle (busybox rootfs from the host's
// static busybox, plus config.json) for the runtime benchmark:
//
//	mkbundle [-writable] [-oci-version V] DIR [ARG...]
//
// The config is the default `runc spec`-style one with the terminal off and
// the process arguments ARG... (default: true). As with `runc spec`, the
// root is read-only unless -writable is given. ociVersion is 1.0.2 by
// default (what `runc spec` of runc 1.1 writes) rather than the spec
// module's version: crun 1.8 (Debian 12) rejects anything past 1.1, and the
// config uses nothing newer than 1.0.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/hullproject/hull/internal/testbundle"
)

func main() {
	writable := flag.Bool("writable", false, "leave the container's root filesystem writable")
	version := flag.String("oci-version", "1.0.2", "ociVersion written to config.json (empty: the runtime-spec module's)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-writable] [-oci-version V] DIR [ARG...]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		os.Exit(2)
	}
	dir, args := flag.Arg(0), flag.Args()[1:]
	if len(args) == 0 {
		args = []string{"true"}
	}
	s := testbundle.Spec(args...)
	s.Root.Readonly = !*writable
	if *version != "" {
		s.Version = *version
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "mkbundle:", err)
		os.Exit(1)
	}
	if err := testbundle.Make(dir, s); err != nil {
		fmt.Fprintln(os.Stderr, "mkbundle:", err)
		os.Exit(1)
	}
}
