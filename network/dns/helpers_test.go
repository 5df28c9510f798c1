package dns

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// testNames is the network the tests resolve in.
var testNames = map[string][]net.IP{
	"web": {net.ParseIP("10.89.0.3"), net.ParseIP("10.89.0.4")},
	"db":  {net.ParseIP("10.89.0.5")},
	"big": bigIPs(100),
}

func bigIPs(n int) []net.IP {
	var ips []net.IP
	for i := range n {
		ips = append(ips, net.IPv4(10, 90, byte(i/250), byte(1+i%250)))
	}
	return ips
}

func testLookup(name string) []net.IP { return testNames[name] }

func testReverse(ip net.IP) []string {
	for name, ips := range testNames {
		if name == "big" {
			continue
		}
		for _, a := range ips {
			if a.Equal(ip) {
				return []string{name}
			}
		}
	}
	return nil
}

func newTestServer(upstream ...string) *Server {
	return &Server{Lookup: testLookup, Reverse: testReverse, Upstream: upstream, TTL: 600}
}

// listenPair opens UDP and TCP on the same free loopback port.
func listenPair(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		udp, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tcp, err := net.Listen("tcp", udp.LocalAddr().String())
		if err != nil {
			udp.Close()
			continue
		}
		return udp, tcp
	}
	t.Fatal("no free port for both UDP and TCP")
	return nil, nil
}

// startServer serves s on loopback until the test ends and checks that
// Serve then returns promptly and cleanly.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	udp, tcp := listenPair(t)
	return serveOn(t, s, udp, tcp)
}

func serveOn(t *testing.T, s *Server, udp net.PacketConn, tcp net.Listener) string {
	t.Helper()
	addr := udp.LocalAddr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, udp, tcp) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return addr
}

type queryOpts struct {
	id     uint16
	edns   int // advertised UDP size; 0: no OPT record
	opcode dnsmessage.OpCode
}

func newQuery(t testing.TB, name string, typ dnsmessage.Type, o queryOpts) []byte {
	t.Helper()
	m := dnsmessage.Message{
		Header: dnsmessage.Header{ID: o.id, RecursionDesired: true, OpCode: o.opcode},
		Questions: []dnsmessage.Question{{
			Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET,
		}},
	}
	if o.edns > 0 {
		var rh dnsmessage.ResourceHeader
		if err := rh.SetEDNS0(o.edns, dnsmessage.RCodeSuccess, false); err != nil {
			t.Fatal(err)
		}
		m.Additionals = append(m.Additionals, dnsmessage.Resource{Header: rh, Body: &dnsmessage.OPTResource{}})
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exchangeUDP sends msg and returns the raw response.
func exchangeUDP(t testing.TB, addr string, msg []byte) ([]byte, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func exchangeTCP(t testing.TB, addr string, msg []byte) ([]byte, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := writeTCPMsg(c, msg); err != nil {
		return nil, err
	}
	return readTCPMsg(c)
}

func unpack(t testing.TB, raw []byte) dnsmessage.Message {
	t.Helper()
	var m dnsmessage.Message
	if err := m.Unpack(raw); err != nil {
		t.Fatalf("unpack response: %v", err)
	}
	return m
}

// ask sends a query over the given transport and unpacks the answer.
func ask(t testing.TB, network, addr string, msg []byte) dnsmessage.Message {
	t.Helper()
	var raw []byte
	var err error
	if network == "tcp" {
		raw, err = exchangeTCP(t, addr, msg)
	} else {
		raw, err = exchangeUDP(t, addr, msg)
	}
	if err != nil {
		t.Fatalf("%s query: %v", network, err)
	}
	return unpack(t, raw)
}

func answerIPs(m dnsmessage.Message) []string {
	var out []string
	for _, a := range m.Answers {
		if r, ok := a.Body.(*dnsmessage.AResource); ok {
			out = append(out, net.IP(r.A[:]).String())
		}
	}
	slices.Sort(out)
	return out
}

func goResolver(addr string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

// fakeUpstream is a resolver on loopback standing in for the host's.
//
//	example.test. A -> 192.0.2.7 (TTL 42)
//	many.test.    A -> 60 addresses, truncated (no answers) over UDP
//	anything else -> NXDOMAIN
//
// With servfail set it answers SERVFAIL to everything.
type fakeUpstream struct {
	addr     string
	servfail bool

	mu         sync.Mutex
	ids        []uint16
	tcpQueries int
}

func startUpstream(t *testing.T, servfail bool) *fakeUpstream {
	t.Helper()
	udp, tcp := listenPair(t)
	f := &fakeUpstream{addr: udp.LocalAddr().String(), servfail: servfail}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := f.respond(buf[:n], true); resp != nil {
				udp.WriteTo(resp, from)
			}
		}
	})
	wg.Go(func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				msg, err := readTCPMsg(c)
				if err != nil {
					return
				}
				f.mu.Lock()
				f.tcpQueries++
				f.mu.Unlock()
				if resp := f.respond(msg, false); resp != nil {
					writeTCPMsg(c, resp)
				}
			})
		}
	})
	t.Cleanup(func() {
		udp.Close()
		tcp.Close()
		wg.Wait()
	})
	return f
}

func (f *fakeUpstream) respond(raw []byte, overUDP bool) []byte {
	var q dnsmessage.Message
	if err := q.Unpack(raw); err != nil || len(q.Questions) != 1 {
		return nil
	}
	f.mu.Lock()
	f.ids = append(f.ids, q.Header.ID)
	f.mu.Unlock()
	qq := q.Questions[0]
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: q.Header.ID, Response: true, RecursionAvailable: true, RecursionDesired: q.Header.RecursionDesired},
		Questions: q.Questions,
	}
	rh := dnsmessage.ResourceHeader{Name: qq.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 42}
	switch name := normalize(qq.Name.String()); {
	case f.servfail:
		m.Header.RCode = dnsmessage.RCodeServerFailure
	case name == "example.test" && qq.Type == dnsmessage.TypeA:
		m.Answers = append(m.Answers, dnsmessage.Resource{Header: rh, Body: &dnsmessage.AResource{A: [4]byte{192, 0, 2, 7}}})
	case name == "many.test" && qq.Type == dnsmessage.TypeA:
		if overUDP {
			m.Header.Truncated = true
			break
		}
		for i := range 60 {
			m.Answers = append(m.Answers, dnsmessage.Resource{Header: rh, Body: &dnsmessage.AResource{A: [4]byte{198, 51, 100, byte(i + 1)}}})
		}
	case name == "example.test" || name == "many.test":
	default:
		m.Header.RCode = dnsmessage.RCodeNameError
	}
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return b
}

func (f *fakeUpstream) seenIDs() []uint16 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ids)
}

func (f *fakeUpstream) seenTCP() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tcpQueries
}

// downAddr returns a loopback UDP address where nothing listens, so queries
// get ICMP port unreachable.
func downAddr(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

// blackhole returns a loopback UDP address that receives queries and never
// answers, like an unreachable resolver.
func blackhole(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().String()
}
