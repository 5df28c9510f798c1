// Command tcpbench is the TCP sink and source of bench/network.sh:
//
//	tcpbench sink [-l :5001]
//	tcpbench send -addr HOST:PORT [-bytes N] [-retry DURATION] [-timeout DURATION]
//
// The sink accepts connections, one after the other, until it is killed.
// From each it reads everything until the sender closes its side, then
// writes back the number of bytes it read as one decimal line, closes the
// connection and prints the count (and its own time) on its standard
// output.
//
// The sender connects, writes N bytes from memory, closes its sending side
// and reads the sink's count. It prints one line,
//
//	bytes=N received=M seconds=S MBps=X
//
// where S runs from before the connection is made to the sink's answer, so
// every byte has been read by the sink when the clock stops, and X is
// N / S / 10^6. It exits non-zero when the sink read a different number of
// bytes. -retry keeps trying to connect for that long (a sink that is still
// starting refuses connections).
//
// It is a static program with no dependency beyond the standard library,
// so that built with CGO_ENABLED=0 it runs in a busybox container.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// bufSize is the size of one read or write: large, so the programs cost
// few system calls per byte and the figures are about the network path.
const bufSize = 1 << 20

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "sink":
		err = sink(os.Args[2:])
	case "send":
		err = send(os.Args[2:])
	case "proxy":
		err = proxy(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcpbench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tcpbench sink [-l ADDR] | tcpbench send -addr HOST:PORT [-bytes N] [-retry D] [-timeout D] | tcpbench proxy -l ADDR -to HOST:PORT")
	os.Exit(2)
}

func sink(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	addr := fs.String("l", ":5001", "address to listen on")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	buf := make([]byte, bufSize)
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		start := time.Now()
		n, err := drain(c, buf)
		if err != nil {
			fmt.Printf("from %s: error after %d bytes: %v\n", c.RemoteAddr(), n, err)
			c.Close()
			continue
		}
		_, werr := fmt.Fprintf(c, "%d\n", n)
		c.Close()
		d := time.Since(start).Seconds()
		fmt.Printf("from %s: received %d bytes in %.3f s (%.1f MB/s)%s\n", c.RemoteAddr(), n, d, float64(n)/d/1e6, errNote(werr))
	}
}

func errNote(err error) string {
	if err == nil {
		return ""
	}
	return "; answer not sent: " + err.Error()
}

// drain reads c until EOF and returns how many bytes it read.
func drain(c net.Conn, buf []byte) (int64, error) {
	var n int64
	for {
		k, err := c.Read(buf)
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func send(args []string) error {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	addr := fs.String("addr", "", "HOST:PORT of the sink")
	total := fs.Int64("bytes", 2<<30, "bytes to send")
	retry := fs.Duration("retry", 0, "keep trying to connect for this long")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up on the transfer after this long")
	fs.Parse(args)
	if *addr == "" || *total < 0 {
		usage()
	}
	buf := make([]byte, bufSize)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	giveUp := time.Now().Add(*retry)
	var c net.Conn
	var err error
	var start time.Time
	for {
		start = time.Now()
		c, err = net.DialTimeout("tcp", *addr, 5*time.Second)
		if err == nil || time.Now().After(giveUp) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(start.Add(*timeout))
	left := *total
	for left > 0 {
		p := buf
		if int64(len(p)) > left {
			p = p[:left]
		}
		k, err := c.Write(p)
		left -= int64(k)
		if err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", *total-left, *total, err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("all %d bytes written, but no count from the sink: %w", *total, err)
	}
	secs := time.Since(start).Seconds()
	got, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return fmt.Errorf("bad count from the sink: %q", line)
	}
	fmt.Printf("bytes=%d received=%d seconds=%.6f MBps=%.1f\n", *total, got, secs, float64(*total)/secs/1e6)
	if got != *total {
		return fmt.Errorf("the sink read %d bytes, %d were sent", got, *total)
	}
	return nil
}

// proxy is a userland port proxy, as docker-proxy is: it accepts on -l and
// copies each connection both ways to -to. The benchmark compares it with
// kernel NAT for reaching a published port at 127.0.0.1.
func proxy(args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ExitOnError)
	listen := fs.String("l", "127.0.0.1:0", "address to listen on")
	to := fs.String("to", "", "address to forward to")
	fs.Parse(args)
	if *to == "" {
		return errors.New("proxy: -to is required")
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	for {
		in, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer in.Close()
			out, err := net.Dial("tcp", *to)
			if err != nil {
				return
			}
			defer out.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(out, in)
				out.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			io.Copy(in, out)
			<-done
		}()
	}
}
