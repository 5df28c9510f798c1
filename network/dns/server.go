// Package dns is the DNS responder of a hull network.
//
// Containers on a user network resolve each other by container name and
// network alias, the way Docker's embedded 127.0.0.11 resolver lets them.
// Names the network does not know are forwarded to upstream resolvers, so a
// container can point its resolv.conf at this responder alone.
package dns

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"
)

// Lookup returns the IPv4 addresses for a name in the network (without the
// trailing dot, lower-case), or nil.
type Lookup func(name string) []net.IP

// ReverseLookup returns the names (without the trailing dot) of the container
// holding ip in the network, or nil.
type ReverseLookup func(ip net.IP) []string

// Server answers DNS queries for one network. Its fields must not change
// while it serves.
type Server struct {
	// Lookup resolves names of the network; nil means no name is known.
	Lookup Lookup

	// Reverse answers PTR queries for addresses of the network. It is
	// separate from Lookup because a name-to-address function cannot be
	// inverted without enumerating the network. Nil: PTR queries are
	// handled like queries for unknown names.
	Reverse ReverseLookup

	// Upstream lists "ip:port" resolvers for names not in the network, tried
	// in order. Empty: unknown names get NXDOMAIN (A/AAAA) or REFUSED (other
	// types).
	Upstream []string

	// TTL is the time to live of our own answers (Docker uses 600). Zero is
	// kept as zero, which tells resolvers not to cache at all.
	TTL uint32
}

const (
	// maxInFlight bounds the UDP queries handled at once. When it is reached
	// the read loop stops reading and the kernel queues or drops datagrams,
	// which is the right back-pressure for a datagram protocol.
	maxInFlight = 1024

	// maxTCPConns bounds open TCP connections for the same reason; further
	// connections wait in the listen backlog.
	maxTCPConns = 256

	// tcpIdle is how long a TCP connection may stay without a query: long
	// enough for a resolver to reuse it, short enough that idle clients do
	// not pin goroutines (RFC 7766 suggests seconds).
	tcpIdle = 10 * time.Second

	// tcpWrite bounds writing one answer so a client that stops reading
	// cannot hold a goroutine.
	tcpWrite = 5 * time.Second
)

// ListenAndServe answers on UDP and TCP at addr ("10.89.0.1:53") until ctx
// ends. See Serve for the returned error.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	udp, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return err
	}
	// Listen on the port UDP got, so that a ":0" address yields one port
	// for both transports, as resolvers expect.
	tcp, err := lc.Listen(ctx, "tcp", udp.LocalAddr().String())
	if err != nil {
		udp.Close()
		return err
	}
	return s.Serve(ctx, udp, tcp)
}

// Serve answers queries arriving on udp and tcp until ctx ends; either may be
// nil to serve only the other. Taking open sockets lets the caller create
// them inside a container's network namespace. Serve owns the sockets and
// closes them before it returns.
//
// Serve returns nil once ctx has ended and every goroutine it started has
// finished, or the error of a socket that failed for another reason (then the
// other socket is stopped too).
func (s *Server) Serve(ctx context.Context, udp net.PacketConn, tcp net.Listener) error {
	if udp == nil && tcp == nil {
		return errors.New("dns: Serve needs a UDP or a TCP socket")
	}
	srv := &server{cfg: s, upstream: s.Upstream}
	if udp != nil {
		srv.upstream = withoutSelf(s.Upstream, udp.LocalAddr())
	}

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	if udp != nil {
		wg.Go(func() {
			if err := srv.serveUDP(sctx, udp, &wg); err != nil {
				cancel(err)
			}
		})
	}
	if tcp != nil {
		wg.Go(func() {
			if err := srv.serveTCP(sctx, tcp, &wg); err != nil {
				cancel(err)
			}
		})
	}

	<-sctx.Done()
	// Closing is what unblocks ReadFrom and Accept; the handlers watch sctx
	// themselves.
	if udp != nil {
		udp.Close()
	}
	if tcp != nil {
		tcp.Close()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return context.Cause(sctx)
}

// withoutSelf drops upstreams equal to our own address: forwarding to
// ourselves would bounce every unknown query until the in-flight limit is
// exhausted.
func withoutSelf(upstream []string, self net.Addr) []string {
	var out []string
	for _, u := range upstream {
		if u != self.String() {
			out = append(out, u)
		}
	}
	return out
}

// server is the state of one Serve call.
type server struct {
	cfg      *Server
	upstream []string
}

func (srv *server) serveUDP(ctx context.Context, conn net.PacketConn, wg *sync.WaitGroup) error {
	sem := make(chan struct{}, maxInFlight)
	// 64 KiB holds any datagram, so no query is silently cut short.
	buf := make([]byte, 65535)
	var backoff time.Duration
	for {
		n, addr, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Other read errors are transient on a datagram socket; one must
			// not take the network's name resolution down with it.
			backoff = nextBackoff(backoff)
			if !sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		backoff = 0
		if n < headerLen {
			continue
		}
		pkt := append([]byte(nil), buf[:n]...)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if resp := srv.handle(ctx, pkt, true); resp != nil {
				conn.WriteTo(resp, addr)
			}
		})
	}
}

func (srv *server) serveTCP(ctx context.Context, l net.Listener, wg *sync.WaitGroup) error {
	sem := make(chan struct{}, maxTCPConns)
	var backoff time.Duration
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := l.Accept()
		if err != nil {
			<-sem
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Accept fails transiently, e.g. when out of file descriptors.
			backoff = nextBackoff(backoff)
			if !sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		backoff = 0
		wg.Go(func() {
			defer func() { <-sem }()
			srv.serveConn(ctx, c)
		})
	}
}

// serveConn answers the queries of one TCP connection in order. Queries are
// not processed in parallel: resolvers rarely pipeline on a container network
// and ordered answers keep the code simple.
func (srv *server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	// Closing on ctx end unblocks a read waiting for the next query.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	for {
		c.SetReadDeadline(time.Now().Add(tcpIdle))
		msg, err := readTCPMsg(c)
		if err != nil {
			return
		}
		resp := srv.handle(ctx, msg, false)
		if resp == nil {
			// Malformed: the stream can no longer be trusted to be in sync.
			return
		}
		c.SetWriteDeadline(time.Now().Add(tcpWrite))
		if err := writeTCPMsg(c, resp); err != nil {
			return
		}
	}
}

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 5 * time.Millisecond
	}
	return min(2*d, time.Second)
}

// sleep waits d and reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
