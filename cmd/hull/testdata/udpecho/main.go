// Command udpecho answers every UDP datagram on a port with the same
// bytes. The tests mount it into busybox containers: Debian's busybox has
// no UDP server (its nc lacks -u).
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: udpecho PORT")
		os.Exit(2)
	}
	conn, err := net.ListenPacket("udp4", ":"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buf := make([]byte, 65536)
	for {
		n, addr, err := conn.ReadFrom(buf)
		if err != nil {
			continue
		}
		fmt.Printf("%s", buf[:n])
		conn.WriteTo(buf[:n], addr)
	}
}
