package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func TestGoResolver(t *testing.T) {
	addr := startServer(t, newTestServer())
	r := goResolver(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The Go resolver asks A and AAAA in parallel: an empty AAAA answer is
	// what lets it return without waiting for a timeout.
	for _, name := range []string{"web", "web.", "WEB", "Web."} {
		start := time.Now()
		ips, err := r.LookupHost(ctx, name)
		if err != nil {
			t.Fatalf("LookupHost(%q): %v", name, err)
		}
		slices.Sort(ips)
		if want := []string{"10.89.0.3", "10.89.0.4"}; !slices.Equal(ips, want) {
			t.Errorf("LookupHost(%q) = %v, want %v", name, ips, want)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("LookupHost(%q) took %v", name, d)
		}
	}

	if ips, err := r.LookupHost(ctx, "db"); err != nil || !slices.Equal(ips, []string{"10.89.0.5"}) {
		t.Errorf("LookupHost(db) = %v, %v", ips, err)
	}

	names, err := r.LookupAddr(ctx, "10.89.0.3")
	if err != nil || !slices.Equal(names, []string{"web."}) {
		t.Errorf("LookupAddr(10.89.0.3) = %v, %v; want [web.]", names, err)
	}

	_, err = r.LookupHost(ctx, "nosuch.")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("LookupHost(nosuch.) error = %v, want not found", err)
	}

	// Over UDP the 100 addresses exceed the resolver's EDNS size of 1232,
	// so this also covers the TC answer and the resolver's TCP retry.
	ips, err := r.LookupHost(ctx, "big")
	if err != nil || len(ips) != 100 {
		t.Errorf("LookupHost(big) = %d addresses, %v; want 100", len(ips), err)
	}
}

func TestRawQueries(t *testing.T) {
	addr := startServer(t, newTestServer())
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			// Mixed case checks both case-insensitive matching and that the
			// answer echoes the question as sent (DNS 0x20).
			m := ask(t, network, addr, newQuery(t, "wEb.", dnsmessage.TypeA, queryOpts{id: 0x1234}))
			if m.Header.ID != 0x1234 || !m.Header.Response || m.Header.RCode != dnsmessage.RCodeSuccess || !m.Header.Authoritative {
				t.Errorf("A web header = %+v", m.Header)
			}
			if got, want := answerIPs(m), []string{"10.89.0.3", "10.89.0.4"}; !slices.Equal(got, want) {
				t.Errorf("A web = %v, want %v", got, want)
			}
			for _, a := range m.Answers {
				if a.Header.TTL != 600 || a.Header.Name.String() != "wEb." {
					t.Errorf("answer header = %+v", a.Header)
				}
			}
			if len(m.Questions) != 1 || m.Questions[0].Name.String() != "wEb." {
				t.Errorf("question not echoed: %+v", m.Questions)
			}
			if m.Header.RecursionAvailable {
				t.Error("RA set without upstreams")
			}

			for _, typ := range []dnsmessage.Type{dnsmessage.TypeAAAA, dnsmessage.TypeMX, dnsmessage.TypeTXT} {
				m = ask(t, network, addr, newQuery(t, "web.", typ, queryOpts{id: 7}))
				if m.Header.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 0 {
					t.Errorf("%v web: rcode %v, %d answers; want NOERROR, none", typ, m.Header.RCode, len(m.Answers))
				}
			}

			m = ask(t, network, addr, newQuery(t, "nosuch.", dnsmessage.TypeA, queryOpts{id: 8}))
			if m.Header.RCode != dnsmessage.RCodeNameError || m.Header.ID != 8 {
				t.Errorf("A nosuch: %+v, want NXDOMAIN", m.Header)
			}
			m = ask(t, network, addr, newQuery(t, "nosuch.", dnsmessage.TypeAAAA, queryOpts{id: 9}))
			if m.Header.RCode != dnsmessage.RCodeNameError {
				t.Errorf("AAAA nosuch: %v, want NXDOMAIN", m.Header.RCode)
			}
			m = ask(t, network, addr, newQuery(t, "nosuch.", dnsmessage.TypeMX, queryOpts{id: 10}))
			if m.Header.RCode != dnsmessage.RCodeRefused {
				t.Errorf("MX nosuch: %v, want REFUSED", m.Header.RCode)
			}

			m = ask(t, network, addr, newQuery(t, "3.0.89.10.in-addr.ARPA.", dnsmessage.TypePTR, queryOpts{id: 11}))
			if m.Header.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 {
				t.Fatalf("PTR 10.89.0.3: %+v", m)
			}
			if p, ok := m.Answers[0].Body.(*dnsmessage.PTRResource); !ok || p.PTR.String() != "web." {
				t.Errorf("PTR 10.89.0.3 = %v, want web.", m.Answers[0].Body)
			}
			// Not in the network and no upstream: REFUSED like other
			// non-address types.
			m = ask(t, network, addr, newQuery(t, "9.9.9.9.in-addr.arpa.", dnsmessage.TypePTR, queryOpts{id: 12}))
			if m.Header.RCode != dnsmessage.RCodeRefused {
				t.Errorf("PTR 9.9.9.9: %v, want REFUSED", m.Header.RCode)
			}

			m = ask(t, network, addr, newQuery(t, "web.", dnsmessage.TypeA, queryOpts{id: 13, edns: 1232}))
			if len(m.Additionals) != 1 || m.Additionals[0].Header.Type != dnsmessage.TypeOPT {
				t.Errorf("EDNS query: additionals %+v, want one OPT", m.Additionals)
			}

			m = ask(t, network, addr, newQuery(t, "web.", dnsmessage.TypeA, queryOpts{id: 14, opcode: 2}))
			if m.Header.RCode != dnsmessage.RCodeNotImplemented || m.Header.ID != 14 {
				t.Errorf("STATUS opcode: %+v, want NOTIMP", m.Header)
			}

			// A header with no question.
			noQ := make([]byte, headerLen)
			binary.BigEndian.PutUint16(noQ, 15)
			m = ask(t, network, addr, noQ)
			if m.Header.RCode != dnsmessage.RCodeFormatError || m.Header.ID != 15 {
				t.Errorf("no question: %+v, want FORMERR", m.Header)
			}
		})
	}
}

func TestTruncation(t *testing.T) {
	addr := startServer(t, newTestServer())
	q := newQuery(t, "big.", dnsmessage.TypeA, queryOpts{id: 1})

	m := ask(t, "udp", addr, q)
	if !m.Header.Truncated || len(m.Answers) != 0 || m.Header.RCode != dnsmessage.RCodeSuccess || len(m.Questions) != 1 {
		t.Errorf("UDP big without EDNS: TC=%v, %d answers, %v; want TC, none", m.Header.Truncated, len(m.Answers), m.Header.RCode)
	}
	m = ask(t, "udp", addr, newQuery(t, "big.", dnsmessage.TypeA, queryOpts{id: 2, edns: 4096}))
	if m.Header.Truncated || len(m.Answers) != 100 {
		t.Errorf("UDP big with EDNS 4096: TC=%v, %d answers; want 100", m.Header.Truncated, len(m.Answers))
	}
	m = ask(t, "tcp", addr, q)
	if m.Header.Truncated || len(m.Answers) != 100 {
		t.Errorf("TCP big: TC=%v, %d answers; want 100", m.Header.Truncated, len(m.Answers))
	}
}

func TestForward(t *testing.T) {
	up := startUpstream(t, false)
	addr := startServer(t, newTestServer(up.addr))

	for _, network := range []string{"udp", "tcp"} {
		m := ask(t, network, addr, newQuery(t, "Example.Test.", dnsmessage.TypeA, queryOpts{id: 0xBEEF}))
		if m.Header.ID != 0xBEEF || m.Header.RCode != dnsmessage.RCodeSuccess {
			t.Errorf("%s forwarded header = %+v", network, m.Header)
		}
		if got := answerIPs(m); !slices.Equal(got, []string{"192.0.2.7"}) || m.Answers[0].Header.TTL != 42 {
			t.Errorf("%s forwarded answer = %v, want upstream's 192.0.2.7 TTL 42", network, m.Answers)
		}
		m = ask(t, network, addr, newQuery(t, "nosuch.test.", dnsmessage.TypeA, queryOpts{id: 0xBEF0}))
		if m.Header.ID != 0xBEF0 || m.Header.RCode != dnsmessage.RCodeNameError {
			t.Errorf("%s upstream NXDOMAIN relayed as %+v", network, m.Header)
		}
	}
	if ids := up.seenIDs(); len(ids) == 0 {
		t.Error("upstream saw no query")
	}

	// Network names never go upstream, and RA now says we recurse.
	before := len(up.seenIDs())
	m := ask(t, "udp", addr, newQuery(t, "web.", dnsmessage.TypeA, queryOpts{id: 3}))
	if len(m.Answers) != 2 || !m.Header.RecursionAvailable {
		t.Errorf("local answer with upstream: %+v", m)
	}
	if len(up.seenIDs()) != before {
		t.Error("a network name was forwarded")
	}

	r := goResolver(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ips, err := r.LookupHost(ctx, "example.test."); err != nil || !slices.Equal(ips, []string{"192.0.2.7"}) {
		t.Errorf("Go resolver example.test = %v, %v", ips, err)
	}

	// Upstream truncates over UDP: we retry over TCP and relay the full
	// answer when it fits the client's EDNS size...
	tcpBefore := up.seenTCP()
	ips, err := r.LookupHost(ctx, "many.test.")
	if err != nil || len(ips) != 60 {
		t.Errorf("Go resolver many.test = %d addresses, %v; want 60", len(ips), err)
	}
	if up.seenTCP() == tcpBefore {
		t.Error("truncated upstream answer was not retried over TCP")
	}
	// ...and a truncated answer when it does not fit plain 512-byte UDP.
	m = ask(t, "udp", addr, newQuery(t, "many.test.", dnsmessage.TypeA, queryOpts{id: 4}))
	if !m.Header.Truncated || m.Header.ID != 4 {
		t.Errorf("many.test over plain UDP: %+v, want TC", m.Header)
	}
	m = ask(t, "tcp", addr, newQuery(t, "many.test.", dnsmessage.TypeA, queryOpts{id: 5}))
	if len(m.Answers) != 60 || m.Header.ID != 5 {
		t.Errorf("many.test over TCP: %d answers, want 60", len(m.Answers))
	}
}

// TestUpstreamFailure pins the choices for failing upstreams: the next one
// is tried, and when none gives a real answer the client gets SERVFAIL
// (not NXDOMAIN, which would wrongly claim the name does not exist).
func TestUpstreamFailure(t *testing.T) {
	good := startUpstream(t, false)
	bad := startUpstream(t, true)
	q := newQuery(t, "example.test.", dnsmessage.TypeA, queryOpts{id: 77})

	t.Run("down then good", func(t *testing.T) {
		addr := startServer(t, newTestServer(downAddr(t), good.addr))
		if m := ask(t, "udp", addr, q); !slices.Equal(answerIPs(m), []string{"192.0.2.7"}) {
			t.Errorf("answer = %+v", m)
		}
	})
	t.Run("servfail then good", func(t *testing.T) {
		addr := startServer(t, newTestServer(bad.addr, good.addr))
		if m := ask(t, "udp", addr, q); !slices.Equal(answerIPs(m), []string{"192.0.2.7"}) {
			t.Errorf("answer = %+v", m)
		}
	})
	t.Run("only servfail", func(t *testing.T) {
		addr := startServer(t, newTestServer(bad.addr))
		if m := ask(t, "udp", addr, q); m.Header.RCode != dnsmessage.RCodeServerFailure || m.Header.ID != 77 {
			t.Errorf("header = %+v, want upstream's SERVFAIL", m.Header)
		}
	})
	t.Run("down", func(t *testing.T) {
		addr := startServer(t, newTestServer(downAddr(t)))
		start := time.Now()
		m := ask(t, "udp", addr, q)
		if m.Header.RCode != dnsmessage.RCodeServerFailure || m.Header.ID != 77 {
			t.Errorf("header = %+v, want SERVFAIL", m.Header)
		}
		// A closed port is reported by ICMP at once; no need to wait.
		if d := time.Since(start); d > time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("silent", func(t *testing.T) {
		addr := startServer(t, newTestServer(blackhole(t)))
		start := time.Now()
		m := ask(t, "udp", addr, q)
		d := time.Since(start)
		if m.Header.RCode != dnsmessage.RCodeServerFailure {
			t.Errorf("header = %+v, want SERVFAIL", m.Header)
		}
		if d < upstreamTimeout-100*time.Millisecond || d > upstreamTimeout+2*time.Second {
			t.Errorf("SERVFAIL after %v, want about %v", d, upstreamTimeout)
		}
	})
	t.Run("self", func(t *testing.T) {
		// An upstream equal to our own address is dropped instead of
		// looping; with nothing left unknown names are NXDOMAIN.
		udp, tcp := listenPair(t)
		addr := serveOn(t, newTestServer(udp.LocalAddr().String()), udp, tcp)
		if m := ask(t, "udp", addr, q); m.Header.RCode != dnsmessage.RCodeNameError {
			t.Errorf("rcode = %v, want NXDOMAIN", m.Header.RCode)
		}
	})
}

func malformedInputs() [][]byte {
	valid := newQueryBytes("web.", dnsmessage.TypeA, 0x4242)
	resp := slices.Clone(valid)
	resp[2] |= 0x80 // QR: a response, must never be answered
	ptrLoop := slices.Clone(valid[:headerLen])
	ptrLoop = append(ptrLoop, 0xc0, headerLen, 0, 1, 0, 1) // name pointing at itself
	manyQ := slices.Clone(valid[:headerLen])
	binary.BigEndian.PutUint16(manyQ[4:], 0xffff)
	longLabel := append(slices.Clone(valid[:headerLen]), 63)
	longLabel = append(longLabel, make([]byte, 10)...)
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 300)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	return [][]byte{
		{0x00},
		valid[:headerLen-1],
		valid[:len(valid)-3],
		resp,
		ptrLoop,
		manyQ,
		longLabel,
		random,
	}
}

func newQueryBytes(name string, typ dnsmessage.Type, id uint16) []byte {
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}},
	}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

func TestMalformed(t *testing.T) {
	addr := startServer(t, newTestServer())
	good := newQuery(t, "web.", dnsmessage.TypeA, queryOpts{id: 99})

	t.Run("udp", func(t *testing.T) {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, in := range malformedInputs() {
			if _, err := c.Write(in); err != nil {
				t.Fatal(err)
			}
		}
		// None of them gets an answer: the first reply must be the one to
		// the valid query sent last.
		if _, err := c.Write(good); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 65535)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if m := unpack(t, buf[:n]); m.Header.ID != 99 || len(m.Answers) != 2 {
			t.Errorf("first reply after garbage = %+v, want the answer to ID 99", m.Header)
		}
	})

	t.Run("tcp", func(t *testing.T) {
		inputs := append(malformedInputs(), nil) // nil: a zero length prefix
		for i, in := range inputs {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if in == nil {
				_, err = c.Write([]byte{0, 0})
			} else {
				err = writeTCPMsg(c, in)
			}
			if err != nil {
				t.Fatal(err)
			}
			// The server closes the connection: the read ends with EOF (or
			// a reset), never with a timeout.
			_, err = readTCPMsg(c)
			var ne net.Error
			if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
				t.Errorf("input %d: read = %v, want the connection closed", i, err)
			}
			c.Close()
		}
		if m := ask(t, "tcp", addr, good); m.Header.ID != 99 || len(m.Answers) != 2 {
			t.Errorf("after garbage: %+v", m.Header)
		}
	})

	t.Run("tcp partial", func(t *testing.T) {
		// A client announcing more than it sends must not block others.
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{0x01, 0x00, 0xab})
		if m := ask(t, "tcp", addr, good); m.Header.ID != 99 {
			t.Errorf("with a stalled connection open: %+v", m.Header)
		}
		if m := ask(t, "udp", addr, good); m.Header.ID != 99 {
			t.Errorf("with a stalled connection open: %+v", m.Header)
		}
	})
}

// TestHandleRandom throws random and mutated packets at the handler directly
// (no network, no upstream) to check that nothing panics.
func TestHandleRandom(t *testing.T) {
	srv := &server{cfg: newTestServer()}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	seeds := [][]byte{
		newQueryBytes("web.", dnsmessage.TypeA, 1),
		newQueryBytes("3.0.89.10.in-addr.arpa.", dnsmessage.TypePTR, 2),
		newQueryBytes("big.", dnsmessage.TypeA, 3),
	}
	for i := range 20000 {
		var in []byte
		if i%2 == 0 {
			in = make([]byte, rng.IntN(80))
			for j := range in {
				in[j] = byte(rng.Uint32())
			}
		} else {
			in = slices.Clone(seeds[rng.IntN(len(seeds))])
			for range 1 + rng.IntN(4) {
				in[rng.IntN(len(in))] = byte(rng.Uint32())
			}
			if rng.IntN(4) == 0 {
				in = in[:rng.IntN(len(in))]
			}
		}
		for _, udp := range []bool{true, false} {
			if resp := srv.handle(ctx, in, udp); resp != nil {
				var p dnsmessage.Parser
				if _, err := p.Start(resp); err != nil {
					t.Fatalf("unparsable response %x to %x", resp, in)
				}
			}
		}
	}
}

func TestConcurrentQueries(t *testing.T) {
	up := startUpstream(t, false)
	addr := startServer(t, newTestServer(up.addr))
	r := goResolver(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const n = 200
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := uint16(i + 1)
			var err error
			switch i % 4 {
			case 0, 1:
				network := []string{"udp", "tcp"}[i%2]
				var raw []byte
				q := newQueryBytes("web.", dnsmessage.TypeA, id)
				if network == "udp" {
					raw, err = exchangeUDP(t, addr, q)
				} else {
					raw, err = exchangeTCP(t, addr, q)
				}
				if err == nil {
					var m dnsmessage.Message
					if err = m.Unpack(raw); err == nil && (m.Header.ID != id || len(m.Answers) != 2) {
						err = fmt.Errorf("%s: ID %d, %d answers", network, m.Header.ID, len(m.Answers))
					}
				}
			case 2:
				var raw []byte
				raw, err = exchangeUDP(t, addr, newQueryBytes("example.test.", dnsmessage.TypeA, id))
				if err == nil {
					var m dnsmessage.Message
					if err = m.Unpack(raw); err == nil && (m.Header.ID != id || len(m.Answers) != 1) {
						err = fmt.Errorf("forwarded: ID %d, %d answers", m.Header.ID, len(m.Answers))
					}
				}
			case 3:
				var ips []string
				ips, err = r.LookupHost(ctx, "db.")
				if err == nil && !slices.Equal(ips, []string{"10.89.0.5"}) {
					err = fmt.Errorf("Go resolver: %v", ips)
				}
			}
			if err != nil {
				errs <- fmt.Errorf("query %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestShutdown(t *testing.T) {
	hole := blackhole(t)
	baseline := runtime.NumGoroutine()

	udp, tcp := listenPair(t)
	addr := udp.LocalAddr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- newTestServer(hole).Serve(ctx, udp, tcp) }()

	if m := ask(t, "udp", addr, newQuery(t, "web.", dnsmessage.TypeA, queryOpts{id: 1})); len(m.Answers) != 2 {
		t.Fatalf("server not answering: %+v", m)
	}
	// An idle TCP connection and a query stuck on a silent upstream must
	// not keep Serve from returning.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if m := ask(t, "tcp", addr, newQuery(t, "db.", dnsmessage.TypeA, queryOpts{id: 2})); len(m.Answers) != 1 {
		t.Fatalf("tcp not answering: %+v", m)
	}
	stuck, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	stuck.Write(newQuery(t, "example.test.", dnsmessage.TypeA, queryOpts{id: 3}))
	time.Sleep(100 * time.Millisecond) // let the query reach the upstream

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if d := time.Since(start); d > upstreamTimeout/2 {
		t.Errorf("Serve took %v to stop; it waited for the upstream", d)
	}

	idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil {
		t.Error("idle TCP connection still open")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("TCP listener still open")
	}

	var now int
	for range 100 {
		if now = runtime.NumGoroutine(); now <= baseline+2 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Errorf("goroutines: %d before, %d after stop\n%s", baseline, now, buf[:runtime.Stack(buf, true)])
}

func TestServeArguments(t *testing.T) {
	if err := (&Server{}).Serve(context.Background(), nil, nil); err == nil {
		t.Error("Serve without sockets succeeded")
	}
	if err := (&Server{}).ListenAndServe(context.Background(), "256.0.0.1:53"); err == nil {
		t.Error("ListenAndServe on a bad address succeeded")
	}

	// ListenAndServe opens both transports itself. The port is probed
	// first and may be taken again before ListenAndServe binds it (TCP and
	// UDP ports are separate), so a failed start is retried on another one.
	var (
		addr    string
		cancel  context.CancelFunc
		done    chan error
		m       dnsmessage.Message
		started bool
	)
	for attempt := 0; !started && attempt < 10; attempt++ {
		probe, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = probe.LocalAddr().String()
		probe.Close()
		var ctx context.Context
		ctx, cancel = context.WithCancel(context.Background())
		done = make(chan error, 1)
		go func() { done <- newTestServer().ListenAndServe(ctx, addr) }()
	wait:
		for range 100 {
			select {
			case err := <-done:
				t.Logf("ListenAndServe(%s): %v; retrying", addr, err)
				cancel()
				break wait
			default:
			}
			if raw, err := exchangeTCP(t, addr, newQuery(t, "web.", dnsmessage.TypeA, queryOpts{id: 5})); err == nil {
				m, started = unpack(t, raw), true
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !started {
		t.Fatal("ListenAndServe never answered")
	}
	if len(m.Answers) != 2 {
		t.Fatalf("ListenAndServe over TCP: %+v", m)
	}
	if m := ask(t, "udp", addr, newQuery(t, "web.", dnsmessage.TypeA, queryOpts{id: 6})); len(m.Answers) != 2 {
		t.Errorf("ListenAndServe over UDP: %+v", m)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ListenAndServe = %v", err)
	}

	// Only UDP: Serve accepts a nil listener.
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = serveOn(t, newTestServer(), udp, nil)
	if m := ask(t, "udp", addr, newQuery(t, "db.", dnsmessage.TypeA, queryOpts{id: 7})); len(m.Answers) != 1 {
		t.Errorf("UDP-only: %+v", m)
	}
}

func TestUpstreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	conf := strings.Join([]string{
		"# generated",
		"; also a comment",
		"search example.com",
		"nameserver 10.0.0.2",
		"nameserver 127.0.0.53",
		"nameserver ::1",
		"nameserver\t2001:db8::1",
		"nameserver 10.0.0.2",
		"nameserver not-an-ip",
		"nameserver",
		"options ndots:2",
		"nameserver ::ffff:127.0.0.1",
		"nameserver 1.1.1.1 # trailing comment",
		"#nameserver 8.8.8.8",
	}, "\n")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	got := Upstreams(path, false)
	if want := []string{"10.0.0.2:53", "[2001:db8::1]:53", "1.1.1.1:53"}; !slices.Equal(got, want) {
		t.Errorf("Upstreams(false) = %v, want %v", got, want)
	}
	got = Upstreams(path, true)
	want := []string{"10.0.0.2:53", "127.0.0.53:53", "[::1]:53", "[2001:db8::1]:53", "[::ffff:127.0.0.1]:53", "1.1.1.1:53"}
	if !slices.Equal(got, want) {
		t.Errorf("Upstreams(true) = %v, want %v", got, want)
	}
	if got := Upstreams(filepath.Join(t.TempDir(), "missing"), false); got != nil {
		t.Errorf("missing file: %v", got)
	}
}

func TestReverseIPv4(t *testing.T) {
	for name, want := range map[string]string{
		"4.3.2.1.in-addr.arpa":   "1.2.3.4",
		"3.0.89.10.in-addr.arpa": "10.89.0.3",
		"3.0.89.in-addr.arpa":    "",
		"x.0.89.10.in-addr.arpa": "",
		"300.0.0.1.in-addr.arpa": "",
		"1.0.0.0.ip6.arpa":       "",
		"web":                    "",
	} {
		ip, ok := reverseIPv4(name)
		if got := ""; ok {
			got = ip.String()
			if got != want {
				t.Errorf("reverseIPv4(%q) = %s, want %q", name, got, want)
			}
		} else if want != "" {
			t.Errorf("reverseIPv4(%q) failed, want %s", name, want)
		}
	}
}
