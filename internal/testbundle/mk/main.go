package main

import (
	"os"
	"github.com/hullproject/hull/internal/testbundle"
)

func main() {
	s := testbundle.Spec(os.Args[2:]...)
	if err := testbundle.Make(os.Args[1], s); err != nil { panic(err) }
}
