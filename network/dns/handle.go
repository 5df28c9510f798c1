package dns

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

const (
	// headerLen is the size of the fixed DNS header; anything shorter cannot
	// be a query.
	headerLen = 12

	// minUDPSize is what every client accepts over UDP (RFC 1035).
	minUDPSize = 512

	// ourUDPSize is the payload size we advertise in EDNS answers: the DNS
	// flag day 2020 value, which avoids IP fragmentation on usual links.
	ourUDPSize = 1232
)

// query is a parsed client query.
type query struct {
	raw  []byte
	hdr  dnsmessage.Header
	q    dnsmessage.Question
	name string // lower-case, without the trailing dot
	edns bool
	// udpSize is the largest answer the client accepts over UDP.
	udpSize int
}

// handle answers one query. It returns nil when nothing should be sent:
// malformed input (a UDP sender may be spoofed and a TCP stream is out of
// sync, so silence is safest), responses (answering those could start a loop
// with another responder), or a server shutting down.
func (srv *server) handle(ctx context.Context, raw []byte, overUDP bool) []byte {
	qr := parseQuery(raw)
	if qr == nil {
		return nil
	}
	resp := srv.answer(ctx, qr)
	if resp == nil {
		return nil
	}
	if overUDP && len(resp) > qr.udpSize {
		// The client retries over TCP when it sees TC; a partial answer set
		// would only be discarded (RFC 2181 9), so send the question alone.
		var h dnsmessage.Header
		var p dnsmessage.Parser
		if rh, err := p.Start(resp); err == nil {
			h = rh
		}
		return srv.build(qr, replyOpts{rcode: h.RCode, truncated: true, authoritative: h.Authoritative})
	}
	return resp
}

// parseQuery reads what we need from a query, or returns nil for malformed
// input. A query without exactly one question is returned with an empty
// question, which answer reports as FORMERR.
func parseQuery(raw []byte) *query {
	var p dnsmessage.Parser
	h, err := p.Start(raw)
	if err != nil || h.Response {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil {
		return nil
	}
	qr := &query{raw: raw, hdr: h, udpSize: minUDPSize}
	if len(qs) == 1 {
		qr.q = qs[0]
		qr.name = normalize(qr.q.Name.String())
	}
	// EDNS is optional; a query whose later sections cannot be read is
	// still answered, just without EDNS, so be lenient past the question.
	if p.SkipAllAnswers() != nil || p.SkipAllAuthorities() != nil {
		return qr
	}
	for {
		rh, err := p.AdditionalHeader()
		if err != nil {
			return qr
		}
		if rh.Type == dnsmessage.TypeOPT {
			qr.edns = true
			qr.udpSize = max(minUDPSize, int(rh.Class))
			return qr
		}
		if p.SkipAdditional() != nil {
			return qr
		}
	}
}

// normalize lower-cases ASCII only (DNS names compare case-insensitively for
// ASCII letters alone, RFC 4343) and drops the trailing dot.
func normalize(name string) string {
	name = strings.TrimSuffix(name, ".")
	b := []byte(name)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// answer produces the response before any size limit is applied.
func (srv *server) answer(ctx context.Context, qr *query) []byte {
	if qr.hdr.OpCode != 0 {
		return srv.build(qr, replyOpts{rcode: dnsmessage.RCodeNotImplemented, noQuestion: qr.q.Name.Length == 0})
	}
	if qr.q.Name.Length == 0 {
		return srv.build(qr, replyOpts{rcode: dnsmessage.RCodeFormatError, noQuestion: true})
	}
	if resp, ok := srv.local(qr); ok {
		return resp
	}
	if len(srv.upstream) == 0 {
		switch qr.q.Type {
		case dnsmessage.TypeA, dnsmessage.TypeAAAA:
			return srv.build(qr, replyOpts{rcode: dnsmessage.RCodeNameError})
		default:
			// We cannot tell whether the name exists for other types, so
			// refuse instead of denying it.
			return srv.build(qr, replyOpts{rcode: dnsmessage.RCodeRefused})
		}
	}
	resp := srv.forward(ctx, qr)
	if resp == nil {
		if ctx.Err() != nil {
			return nil
		}
		return srv.build(qr, replyOpts{rcode: dnsmessage.RCodeServerFailure})
	}
	// Upstreams saw our own random ID; the client expects its own.
	binary.BigEndian.PutUint16(resp, qr.hdr.ID)
	return resp
}

// local answers from the network's names. ok is false when the name is not
// ours and the query must go upstream.
func (srv *server) local(qr *query) ([]byte, bool) {
	if qr.q.Class != dnsmessage.ClassINET || qr.name == "" {
		return nil, false
	}
	if qr.q.Type == dnsmessage.TypePTR {
		return srv.localPTR(qr)
	}
	if srv.cfg.Lookup == nil {
		return nil, false
	}
	ips := srv.cfg.Lookup(qr.name)
	if len(ips) == 0 {
		return nil, false
	}
	opts := replyOpts{authoritative: true}
	switch qr.q.Type {
	case dnsmessage.TypeA, dnsmessage.TypeALL:
		for _, ip := range ips {
			if ip4 := ip.To4(); ip4 != nil {
				opts.a = append(opts.a, [4]byte(ip4))
			}
		}
	}
	// Other types (AAAA above all) get NOERROR without answers: the name
	// exists, and an empty answer lets resolvers stop at once instead of
	// waiting for an upstream that cannot know container names.
	return srv.build(qr, opts), true
}

func (srv *server) localPTR(qr *query) ([]byte, bool) {
	if srv.cfg.Reverse == nil {
		return nil, false
	}
	ip, ok := reverseIPv4(qr.name)
	if !ok {
		return nil, false
	}
	names := srv.cfg.Reverse(ip)
	var opts replyOpts
	for _, n := range names {
		n = strings.TrimSuffix(n, ".") + "."
		if name, err := dnsmessage.NewName(n); err == nil {
			opts.ptr = append(opts.ptr, name)
		}
	}
	if len(opts.ptr) == 0 {
		return nil, false
	}
	opts.authoritative = true
	return srv.build(qr, opts), true
}

// reverseIPv4 turns "4.3.2.1.in-addr.arpa" into 1.2.3.4.
func reverseIPv4(name string) (net.IP, bool) {
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa")
	if !ok {
		return nil, false
	}
	labels := strings.Split(rest, ".")
	if len(labels) != 4 {
		return nil, false
	}
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	addr, err := netip.ParseAddr(strings.Join(labels, "."))
	if err != nil || !addr.Is4() {
		return nil, false
	}
	return net.IP(addr.AsSlice()), true
}

// replyOpts describes a response we build ourselves.
type replyOpts struct {
	rcode         dnsmessage.RCode
	authoritative bool
	truncated     bool
	noQuestion    bool
	a             [][4]byte
	ptr           []dnsmessage.Name
}

// build packs a response to qr. The answer names echo the question exactly,
// so resolvers that randomise letter case (DNS 0x20) accept them. Negative
// answers carry no SOA: we have no zone, and without one resolvers do not
// cache the miss, so a container started a moment later is found at once.
func (srv *server) build(qr *query, o replyOpts) []byte {
	h := dnsmessage.Header{
		ID:                 qr.hdr.ID,
		Response:           true,
		OpCode:             qr.hdr.OpCode,
		Authoritative:      o.authoritative,
		Truncated:          o.truncated,
		RecursionDesired:   qr.hdr.RecursionDesired,
		RecursionAvailable: len(srv.upstream) > 0,
		RCode:              o.rcode,
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil
	}
	if !o.noQuestion {
		if err := b.Question(qr.q); err != nil {
			return nil
		}
	}
	if err := b.StartAnswers(); err != nil {
		return nil
	}
	rh := dnsmessage.ResourceHeader{Name: qr.q.Name, Class: dnsmessage.ClassINET, TTL: srv.cfg.TTL}
	if !o.truncated {
		for _, a := range o.a {
			if err := b.AResource(rh, dnsmessage.AResource{A: a}); err != nil {
				return nil
			}
		}
		for _, p := range o.ptr {
			if err := b.PTRResource(rh, dnsmessage.PTRResource{PTR: p}); err != nil {
				return nil
			}
		}
	}
	if err := b.StartAdditionals(); err != nil {
		return nil
	}
	if qr.edns {
		// RFC 6891 6.1.1: an EDNS query gets an EDNS answer.
		var opt dnsmessage.ResourceHeader
		if err := opt.SetEDNS0(ourUDPSize, dnsmessage.RCodeSuccess, false); err != nil {
			return nil
		}
		if err := b.OPTResource(opt, dnsmessage.OPTResource{}); err != nil {
			return nil
		}
	}
	msg, err := b.Finish()
	if err != nil {
		return nil
	}
	return msg
}
