package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// upstreamTimeout is what one upstream gets to answer, UDP and TCP retry
// together. Resolvers in containers usually give up after 5 s; 2 s leaves
// room to try a second upstream within that.
const upstreamTimeout = 2 * time.Second

var (
	errBadResponse = errors.New("dns: upstream answer does not match the query")
	errShortMsg    = errors.New("dns: message shorter than a DNS header")
)

// forward relays the client's query to the upstreams in order and returns
// the first real answer, or nil when none answered.
func (srv *server) forward(ctx context.Context, qr *query) []byte {
	msg := append([]byte(nil), qr.raw...)
	// A fresh random ID toward upstream makes off-path answer spoofing
	// harder than reusing the client's (often predictable) one.
	id := uint16(rand.Uint32())
	binary.BigEndian.PutUint16(msg, id)
	var fallback []byte
	for _, up := range srv.upstream {
		if ctx.Err() != nil {
			return nil
		}
		resp, err := exchange(ctx, up, msg, id, qr.q)
		if err != nil {
			continue
		}
		// SERVFAIL and REFUSED speak about that upstream (broken, or not
		// recursing for us), not about the name: ask the next one, but keep
		// the answer in case nobody does better.
		switch dnsmessage.RCode(resp[3] & 0x0f) {
		case dnsmessage.RCodeServerFailure, dnsmessage.RCodeRefused:
			if fallback == nil {
				fallback = resp
			}
			continue
		}
		return resp
	}
	return fallback
}

// exchange asks one upstream over UDP, then over TCP if the answer was
// truncated.
func exchange(ctx context.Context, addr string, msg []byte, id uint16, q dnsmessage.Question) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, upstreamTimeout)
	defer cancel()
	resp, err := exchangeOn(ctx, "udp", addr, msg, id, q)
	if err != nil {
		return nil, err
	}
	if resp[2]&0x02 == 0 { // TC bit
		return resp, nil
	}
	full, err := exchangeOn(ctx, "tcp", addr, msg, id, q)
	if err != nil {
		// The truncated answer still tells the client to retry over TCP,
		// which is better than a SERVFAIL.
		return resp, nil
	}
	return full, nil
}

func exchangeOn(ctx context.Context, network, addr string, msg []byte, id uint16, q dnsmessage.Question) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// Cancellation carries no deadline of its own: expire the socket so a
	// blocked read returns when the server stops.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if network == "tcp" {
		if err := writeTCPMsg(c, msg); err != nil {
			return nil, err
		}
		resp, err := readTCPMsg(c)
		if err != nil {
			return nil, err
		}
		if !validResponse(resp, id, q) {
			return nil, errBadResponse
		}
		return resp, nil
	}

	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		// The socket is connected, so the kernel reports a closed upstream
		// port (ICMP unreachable) here right away instead of a timeout.
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		// Anything else is a stray or spoofed datagram: keep waiting for
		// the real answer until the deadline.
		if validResponse(buf[:n], id, q) {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

// validResponse reports whether resp answers our query: same ID, a
// response, and the same question when it carries one (error answers such
// as FORMERR may omit it).
func validResponse(resp []byte, id uint16, q dnsmessage.Question) bool {
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil || h.ID != id || !h.Response {
		return false
	}
	rq, err := p.Question()
	if errors.Is(err, dnsmessage.ErrSectionDone) {
		return true
	}
	if err != nil {
		return false
	}
	return rq.Type == q.Type && rq.Class == q.Class &&
		normalize(rq.Name.String()) == normalize(q.Name.String())
}

// readTCPMsg reads one length-prefixed message (RFC 1035 4.2.2).
func readTCPMsg(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint16(l[:])
	if n < headerLen {
		return nil, errShortMsg
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// writeTCPMsg writes one length-prefixed message in a single write, so the
// length and the message do not leave as separate segments.
func writeTCPMsg(w io.Writer, msg []byte) error {
	if len(msg) > 0xffff {
		return errors.New("dns: message too long for TCP")
	}
	buf := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	copy(buf[2:], msg)
	_, err := w.Write(buf)
	return err
}
