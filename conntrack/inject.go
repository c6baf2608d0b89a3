//go:build linux

package conntrack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// Injection writes conntrack entries into the kernel, the takeover half of
// state sync: a node that takes over its peer's flows creates them with
// IPCTNL_MSG_CT_NEW (NLM_F_CREATE|NLM_F_EXCL) before the traffic is
// redirected to it, so the first redirected segment finds an ESTABLISHED,
// NATed entry instead of being INVALID.
//
// How an entry is built so that the kernel NATs it:
//   - The NAT binding is not given as status bits (the kernel ignores
//     SRC_NAT/DST_NAT and their DONE bits from userspace) but as CTA_NAT_SRC
//     (an SNAT flow: the translated source, Reply.Dst, address and port) or
//     CTA_NAT_DST (a port forward: the translated destination, Reply.Src).
//     The reply tuple sent is the un-NATed inverse of the original; the
//     kernel's NAT setup translates it to the flow's reply tuple, sets the
//     NAT status bits and hashes the entry under both tuples. A reply
//     tuple sent already translated would leave the entry un-NATed.
//   - Status: SEEN_REPLY|ASSURED for an assured flow (CONFIRMED is set by
//     the kernel anyway, and sent so that no kernel refuses the change).
//   - TCP: the state (ESTABLISHED when the flow names none) and, in both
//     directions, IP_CT_TCP_FLAG_BE_LIBERAL: the entry has no window
//     history, so strict window tracking could call a mid-stream segment
//     out of window (INVALID, which the forward chain drops or resets)
//     even where nf_conntrack_tcp_be_liberal is 0.
//   - The timeout (seconds, at least 1) and the connmark.
//
// Messages go out in batches, one sendmsg each; the kernel handles a batch
// within the sendmsg, acknowledging only the last message and reporting
// every failed one, so a batch costs one send and one receive plus one per
// failure.

// ctnetlink message types and attributes (linux/netfilter/nfnetlink_conntrack.h).
const (
	ctnlMsgNew    = 0 // IPCTNL_MSG_CT_NEW
	ctnlMsgDelete = 2 // IPCTNL_MSG_CT_DELETE
	nfnlSubsysCT  = 1 // NFNL_SUBSYS_CTNETLINK

	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaStatus     = 3
	ctaProtoInfo  = 4
	ctaNATSrc     = 6
	ctaTimeout    = 7
	ctaMark       = 8
	ctaNATDst     = 13

	ctaTupleIP    = 1
	ctaTupleProto = 2

	ctaIPv4Src = 1
	ctaIPv4Dst = 2
	ctaIPv6Src = 3
	ctaIPv6Dst = 4

	ctaProtoNum      = 1
	ctaProtoSrcPort  = 2
	ctaProtoDstPort  = 3
	ctaProtoICMPID   = 4
	ctaProtoICMPType = 5
	ctaProtoICMPCode = 6
	ctaProtoICMPv6ID = 7
	ctaProtoICMPv6Ty = 8
	ctaProtoICMPv6Co = 9

	ctaProtoInfoTCP      = 1
	ctaProtoInfoTCPState = 1
	ctaProtoInfoTCPFlOrg = 4 // CTA_PROTOINFO_TCP_FLAGS_ORIGINAL
	ctaProtoInfoTCPFlRep = 5 // CTA_PROTOINFO_TCP_FLAGS_REPLY

	ctaNATV4MinIP = 1
	ctaNATV4MaxIP = 2
	ctaNATProto   = 3
	ctaNATV6MinIP = 4
	ctaNATV6MaxIP = 5

	ctaProtoNATPortMin = 1
	ctaProtoNATPortMax = 2

	nlaFNested = 0x8000

	// tcpFlagBeLiberal is IP_CT_TCP_FLAG_BE_LIBERAL (nf_conntrack_tcp.h).
	tcpFlagBeLiberal = 0x08

	// injectBatchLen is the number of entries per sendmsg: about 40 KiB of
	// requests, well inside the socket's send buffer, and at most as many
	// error reports as the forced receive buffer holds.
	injectBatchLen = 256
	// injectReadBuffer holds a whole batch's error reports (each a small
	// skb of under 1 KiB truesize) with room to spare.
	injectReadBuffer = 1 << 20
)

// ErrNoFlow is returned (wrapped) by Delete when the kernel has no entry
// with that original tuple.
var ErrNoFlow = errors.New("no such conntrack entry")

// InjectResult counts what one Inject call did. Created+Existed+Failed is
// the number of flows given.
type InjectResult struct {
	Created int // new kernel entries
	// Existed counts flows the kernel already had: an entry with the same
	// original tuple and the same NAT binding. Inject is idempotent:
	// running it again counts the first run's entries here.
	Existed int
	Failed  int
	// FirstErr says why the first failed flow failed, naming the flow.
	FirstErr error
}

func (r *InjectResult) fail(err error) {
	if r.Failed == 0 {
		r.FirstErr = err
	}
	r.Failed++
}

// Injector creates and deletes conntrack entries in one network namespace.
// Its methods are safe for concurrent use; calls run one at a time.
//
// One socket does the work: ctnetlink creates entries under the
// subsystem's mutex, so a second socket would only spin on it (measured:
// two sockets on two goroutines were no faster on 2 vCPUs, with up to
// twice the kernel time). Inject pipelines instead, encoding the next
// batch while the kernel works through the current one; InjectSeq also
// overlaps producing the flows with it.
type Injector struct {
	log     *slog.Logger
	where   string
	ns      NetNS        // our duplicate of the namespace
	closeNS func() error // closes it

	seq atomic.Uint32 // netlink sequence numbers, shared by the pipeline's two goroutines

	mu     sync.Mutex
	closed bool
	d      *nlDumper // nil until dialled, and after a socket failure
	free   chan *injectBatch
}

// injectBatch is one sendmsg worth of requests.
type injectBatch struct {
	first int // index of the batch's first flow in the caller's list
	flows []Flow
	own   []Flow // InjectSeq's copies of its flows (flows is own[:n])
	buf   []byte
	// seqs[i] is the sequence number of flows[i]'s message; 0 for a flow
	// that could not be encoded, whose error is in bad[i].
	seqs [injectBatchLen]uint32
	bad  [injectBatchLen]error
	last uint32 // sequence number of the last message; 0: none encoded
}

// OpenInjector dials ctnetlink in the network namespace ns, like Open. It
// keeps its own duplicate of the namespace fd to redial after a socket
// failure. Writing entries needs
// CAP_NET_ADMIN in that namespace, and an SNAT or DNAT flow needs the
// kernel's NAT (nf_nat) loaded, as it is where a NAT ruleset exists.
func OpenInjector(log *slog.Logger, ns NetNS) (*Injector, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	own, closeNS, err := ns.dup()
	if err != nil {
		return nil, fmt.Errorf("conntrack.OpenInjector(%s): %w", ns, err)
	}
	in := &Injector{log: log, where: ns.String(), ns: own, closeNS: closeNS, free: make(chan *injectBatch, 2)}
	for range cap(in.free) {
		in.free <- &injectBatch{}
	}
	// Dial now, so that a namespace or permission problem shows at start
	// rather than at takeover.
	if _, err := in.socket(); err != nil {
		in.Close()
		return nil, fmt.Errorf("conntrack.OpenInjector(%s): %w", in.where, err)
	}
	return in, nil
}

// socket returns the socket, dialling it first if needed. Call with mu
// held.
func (in *Injector) socket() (*nlDumper, error) {
	if in.closed {
		return nil, ErrClosed
	}
	if in.d != nil {
		return in.d, nil
	}
	d, err := dialNetfilter(in.ns)
	if err != nil {
		return nil, err
	}
	// Errors carry only the failed request's header, not its attributes.
	if err := d.conn.SetOption(netlink.CapAcknowledge, true); err != nil {
		d.close()
		return nil, fmt.Errorf("ctnetlink socket: NETLINK_CAP_ACK: %w", err)
	}
	if err := setReadBuffer(d.conn, injectReadBuffer); err != nil {
		in.log.Warn("conntrack inject: cannot force the socket's receive buffer; a batch with many failures may overrun it",
			"netns", in.where, "bytes", injectReadBuffer, "err", err)
	}
	in.d = d
	return d, nil
}

// broken drops a socket whose state is unknown after an error; the next
// call redials. Call with mu held.
func (in *Injector) broken() {
	if in.d != nil {
		if err := in.d.close(); err != nil {
			in.log.Debug("close conntrack inject socket", "netns", in.where, "err", err)
		}
		in.d = nil
	}
}

// Close releases the socket and the namespace fd.
func (in *Injector) Close() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return nil
	}
	in.closed = true
	var err error
	if in.d != nil {
		err = in.d.close()
		in.d = nil
	}
	err = errors.Join(err, in.closeNS())
	if err != nil {
		return fmt.Errorf("conntrack injector (%s): close: %w", in.where, err)
	}
	return nil
}

func (in *Injector) nextSeq() uint32 {
	for {
		if s := in.seq.Add(1); s != 0 {
			return s
		}
	}
}

// Inject creates a kernel entry for each flow (see the notes on injection
// above for what an entry carries). A flow the kernel already has counts
// as existing; a flow the kernel refuses, or that cannot be encoded,
// counts as failed and the others go on; FirstErr is the first failed
// flow's in the order given. The error is for the call as a whole: ctx
// ended or the socket failed; the result then counts the flows not reached
// as failed.
func (in *Injector) Inject(ctx context.Context, flows []Flow) (InjectResult, error) {
	return in.inject(ctx, len(flows), func(ctx context.Context, free <-chan *injectBatch, ready chan<- *injectBatch) {
		for start := 0; start < len(flows); start += injectBatchLen {
			var b *injectBatch
			select {
			case b = <-free:
			case <-ctx.Done():
				return
			}
			b.encode(in, start, flows[start:min(start+injectBatchLen, len(flows))])
			ready <- b // never blocks: ready holds every batch there is
		}
	})
}

// InjectSeq is Inject for the flows that flows yields, at most n: it
// encodes them as they come while the kernel works through the batch
// before, so that producing the flows (a takeover's rewrite) overlaps
// the kernel's work instead of preceding it. The flows are copied; flows
// is ranged over once, on a goroutine of its own, and stopped early when
// ctx ends or the socket fails; the error's result then counts n less
// the flows accounted for as failed. Flows beyond n are not injected and
// count as failed.
func (in *Injector) InjectSeq(ctx context.Context, n int, flows iter.Seq[Flow]) (InjectResult, error) {
	var extra int
	res, err := in.inject(ctx, n, func(ctx context.Context, free <-chan *injectBatch, ready chan<- *injectBatch) {
		var b *injectBatch
		start, taken := 0, 0
		handOver := func() {
			b.encode(in, start, b.own)
			start += len(b.own)
			ready <- b // never blocks, as above
			b = nil
		}
		for f := range flows {
			if taken == n {
				extra++
				continue
			}
			taken++
			if b == nil {
				select {
				case b = <-free:
				case <-ctx.Done():
					return
				}
				b.own = b.own[:0]
			}
			b.own = append(b.own, f)
			if len(b.own) == injectBatchLen {
				handOver()
			}
		}
		if b != nil {
			handOver()
		}
	})
	if extra > 0 {
		ferr := fmt.Errorf("conntrack inject (%s): %d flows beyond the %d announced", in.where, extra, n)
		for range extra {
			res.fail(ferr)
		}
	}
	return res, err
}

// inject runs produce, which fills free batches with up to n flows in
// order and hands them to ready, while this goroutine sends each batch
// and reads its reports: the encoding of the next batch overlaps the
// kernel's work on the current one.
func (in *Injector) inject(ctx context.Context, n int, produce func(ctx context.Context, free <-chan *injectBatch, ready chan<- *injectBatch)) (InjectResult, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	var res InjectResult
	d, err := in.socket()
	if err != nil {
		err = fmt.Errorf("conntrack inject (%s): %w", in.where, err)
		for range n {
			res.fail(err)
		}
		return res, err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan *injectBatch, cap(in.free))
	go func() {
		defer close(ready)
		produce(ctx, in.free, ready)
	}()

	done := 0 // flows accounted for
	for b := range ready {
		if err == nil {
			err = ctx.Err()
		}
		if err == nil {
			if err = in.sendBatch(ctx, d, b, &res); err != nil {
				in.broken()
				err = fmt.Errorf("flows %d..%d: %w", b.first, b.first+len(b.flows)-1, err)
			} else {
				done += len(b.flows)
			}
		}
		if err != nil {
			cancel() // stop the producer; drain what it made
		}
		b.flows = nil
		clear(b.own) // drop the copies' references
		in.free <- b
	}
	if err == nil && done < n {
		err = ctx.Err() // the producer stopped early, or made fewer
	}
	if err != nil {
		err = fmt.Errorf("conntrack inject (%s): %w", in.where, err)
		for range n - done {
			res.fail(err)
		}
		return res, err
	}
	return res, nil
}

// encode builds the batch's requests for flows, which start at index first
// of the caller's list.
func (b *injectBatch) encode(in *Injector, first int, flows []Flow) {
	b.first, b.flows, b.buf, b.last = first, flows, b.buf[:0], 0
	lastOff := 0
	for i := range flows {
		b.seqs[i], b.bad[i] = 0, nil
		seq := in.nextSeq()
		off := len(b.buf)
		buf, err := appendNewEntry(b.buf, &flows[i], seq)
		if err != nil {
			b.bad[i] = err
			continue
		}
		b.buf, b.seqs[i], b.last, lastOff = buf, seq, seq, off
	}
	if b.last != 0 {
		// Only the last message asks for an acknowledgement: its ack ends
		// the batch's reports (the kernel answers in order). Flags sit at
		// offset 6.
		flags := b.buf[lastOff+6:]
		binary.NativeEndian.PutUint16(flags, binary.NativeEndian.Uint16(flags)|unix.NLM_F_ACK)
	}
}

// sendBatch sends one batch and reads the kernel's reports. A batch that
// fails as a whole adds nothing to res.
func (in *Injector) sendBatch(ctx context.Context, d *nlDumper, b *injectBatch, res *InjectResult) error {
	failed := make(map[uint32]syscall.Errno)
	if b.last != 0 {
		if err := d.send(b.buf); err != nil {
			return fmt.Errorf("send %d entries: %w", len(b.flows), err)
		}
		if err := d.readReports(ctx, b.last, failed); err != nil {
			return err
		}
	}
	var part InjectResult
	for i := range b.flows {
		f := &b.flows[i]
		if b.bad[i] != nil {
			part.fail(fmt.Errorf("flow %s: %w", f.Original, b.bad[i]))
			continue
		}
		errno, refused := failed[b.seqs[i]]
		switch {
		case !refused:
			part.Created++
		case errno == unix.EEXIST:
			if err := in.sameEntry(ctx, d, f); err != nil {
				part.fail(fmt.Errorf("flow %s: %w", f.Original, err))
			} else {
				part.Existed++
			}
		default:
			part.fail(fmt.Errorf("flow %s: create entry: %w", f.Original, errno))
		}
	}
	if res.Failed == 0 && part.Failed > 0 {
		res.FirstErr = part.FirstErr
	}
	res.Created += part.Created
	res.Existed += part.Existed
	res.Failed += part.Failed
	return nil
}

// sameEntry tells an entry that is really the flow (the same original
// tuple, and the same NAT binding) from a clash: EEXIST also answers a
// flow whose translated reply tuple another entry already uses.
func (in *Injector) sameEntry(ctx context.Context, d *nlDumper, f *Flow) error {
	got, err := d.get(ctx, in.nextSeq(), f.Original)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("its translated tuple %s is in use by another entry", f.Reply)
	}
	if err != nil {
		return fmt.Errorf("read back the existing entry: %w", err)
	}
	if got.Reply != f.Reply {
		return fmt.Errorf("an entry exists with another reply tuple %s", got.Reply)
	}
	return nil
}

// Delete removes the entry whose original tuple is orig; ErrNoFlow
// (wrapped) when there is none.
func (in *Injector) Delete(ctx context.Context, orig Tuple) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	d, err := in.socket()
	if err != nil {
		return fmt.Errorf("conntrack delete %s (%s): %w", orig, in.where, err)
	}
	seq := in.nextSeq()
	msg, err := appendRequest(nil, ctnlMsgDelete, unix.NLM_F_ACK, seq, orig)
	if err != nil {
		return fmt.Errorf("conntrack delete %s: %w", orig, err)
	}
	if err := d.send(msg); err != nil {
		in.broken()
		return fmt.Errorf("conntrack delete %s (%s): send: %w", orig, in.where, err)
	}
	failed := make(map[uint32]syscall.Errno, 1)
	if err := d.readReports(ctx, seq, failed); err != nil {
		in.broken()
		return fmt.Errorf("conntrack delete %s (%s): %w", orig, in.where, err)
	}
	switch errno, refused := failed[seq]; {
	case !refused:
		return nil
	case errno == unix.ENOENT:
		return fmt.Errorf("conntrack delete %s (%s): %w", orig, in.where, ErrNoFlow)
	default:
		return fmt.Errorf("conntrack delete %s (%s): %w", orig, in.where, errno)
	}
}

// send writes b (one or more netlink messages) in one sendmsg.
func (d *nlDumper) send(b []byte) error {
	var serr error
	err := d.raw.Write(func(fd uintptr) bool {
		for {
			serr = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
			switch serr {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			return true
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// readReports reads the kernel's answers to a batch until the
// acknowledgement of the message lastSeq, recording each failed message's
// errno by its sequence number. Answers to other sequence numbers (a
// request abandoned earlier) are skipped.
func (d *nlDumper) readReports(ctx context.Context, lastSeq uint32, failed map[uint32]syscall.Errno) error {
	return d.readUntil(ctx, func(m syscall.NetlinkMessage) (bool, error) {
		if m.Header.Type != unix.NLMSG_ERROR {
			return false, nil
		}
		if len(m.Data) < 4+unix.NLMSG_HDRLEN {
			return false, fmt.Errorf("netlink error report of %d bytes is too short", len(m.Data))
		}
		seq := binary.NativeEndian.Uint32(m.Data[4+8:])
		if errno := nlErrno(m.Data); errno != 0 {
			failed[seq] = errno
		}
		return seq == lastSeq, nil
	})
}

// get reads the entry with original tuple orig.
func (d *nlDumper) get(ctx context.Context, seq uint32, orig Tuple) (Flow, error) {
	msg, err := appendRequest(nil, ctnlMsgGet, 0, seq, orig)
	if err != nil {
		return Flow{}, err
	}
	if err := d.send(msg); err != nil {
		return Flow{}, fmt.Errorf("send get: %w", err)
	}
	var got Flow
	err = d.readUntil(ctx, func(m syscall.NetlinkMessage) (bool, error) {
		if m.Header.Seq != seq {
			return false, nil
		}
		if m.Header.Type == unix.NLMSG_ERROR {
			return true, fmt.Errorf("get entry: %w", nlErrno(m.Data))
		}
		var ev ct.Event
		nm := netlink.Message{
			Header: netlink.Header{Length: m.Header.Len, Type: netlink.HeaderType(m.Header.Type), Flags: netlink.HeaderFlags(m.Header.Flags), Sequence: m.Header.Seq},
			Data:   m.Data,
		}
		if err := ev.Unmarshal(nm); err != nil || ev.Flow == nil {
			return true, fmt.Errorf("decode entry (message type %#x): %v", m.Header.Type, err)
		}
		got = FlowFrom(ev.Flow)
		return true, nil
	})
	return got, err
}

// readUntil reads datagrams and hands each message to handle until handle
// reports done, ctx ends or the kernel is silent for recvIdle.
func (d *nlDumper) readUntil(ctx context.Context, handle func(syscall.NetlinkMessage) (done bool, err error)) error {
	stop := context.AfterFunc(ctx, func() { _ = d.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		dl := time.Now().Add(recvIdle)
		if cdl, ok := ctx.Deadline(); ok && cdl.Before(dl) {
			dl = cdl
		}
		if err := d.conn.SetReadDeadline(dl); err != nil {
			return fmt.Errorf("set read deadline: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := d.recv()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if cerr := ctx.Err(); cerr != nil {
					return cerr
				}
				return errRecvIdle
			}
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(d.buf[:n])
		if err != nil {
			return fmt.Errorf("parse netlink datagram of %d bytes: %w", n, err)
		}
		for _, m := range msgs {
			done, err := handle(m)
			if err != nil || done {
				return err
			}
		}
	}
}

// appendNewEntry appends the IPCTNL_MSG_CT_NEW message creating f. On
// error b is returned unchanged.
func appendNewEntry(b []byte, f *Flow, seq uint32) ([]byte, error) {
	o, r := f.Original, f.Reply
	if err := checkTuple(o); err != nil {
		return b, fmt.Errorf("original tuple: %w", err)
	}
	if err := checkTuple(r); err != nil {
		return b, fmt.Errorf("reply tuple: %w", err)
	}
	if o.Proto != r.Proto {
		return b, fmt.Errorf("original protocol %d differs from the reply's %d", o.Proto, r.Proto)
	}
	if o.Src.Addr().Unmap().Is4() != r.Src.Addr().Unmap().Is4() {
		return b, errors.New("original and reply tuples mix IPv4 and IPv6")
	}
	if f.Timeout <= 0 {
		return b, fmt.Errorf("timeout %s: an entry needs time left", f.Timeout)
	}
	var state uint8
	if o.Proto == protoTCP {
		s, ok := tcpStateOf(f.TCPState)
		if !ok {
			return b, fmt.Errorf("unknown TCP state %q", f.TCPState)
		}
		state = s
	}
	// The reply tuple as without NAT; the kernel translates it.
	reply := r
	if f.SNAT || f.DNAT {
		reply = Tuple{Proto: o.Proto, Src: o.Dst, Dst: o.Src, ICMPID: o.ICMPID}
	}
	status := uint32(ct.StatusConfirmed)
	if f.Assured {
		status |= uint32(ct.StatusSeenReply | ct.StatusAssured)
	}

	w, start := beginRequest(b, ctnlMsgNew, unix.NLM_F_CREATE|unix.NLM_F_EXCL, seq, o)
	w.tuple(ctaTupleOrig, o, false)
	w.tuple(ctaTupleReply, reply, true)
	w.u32(ctaStatus, status)
	w.u32(ctaTimeout, uint32((f.Timeout+time.Second-1)/time.Second))
	if f.Mark != 0 {
		w.u32(ctaMark, f.Mark)
	}
	if o.Proto == protoTCP {
		pi := w.begin(ctaProtoInfo)
		tcp := w.begin(ctaProtoInfoTCP)
		w.u8(ctaProtoInfoTCPState, state)
		// struct nf_ct_tcp_flags: flags, then the mask of those to set.
		w.u16(ctaProtoInfoTCPFlOrg, tcpFlagBeLiberal<<8|tcpFlagBeLiberal)
		w.u16(ctaProtoInfoTCPFlRep, tcpFlagBeLiberal<<8|tcpFlagBeLiberal)
		w.end(tcp)
		w.end(pi)
	}
	if f.DNAT {
		w.natRange(ctaNATDst, r.Src, r.ICMPID, o.Proto)
	}
	if f.SNAT {
		w.natRange(ctaNATSrc, r.Dst, r.ICMPID, o.Proto)
	}
	return w.finish(start), nil
}

// appendRequest appends a request that names an entry by its original
// tuple only (a get or a delete).
func appendRequest(b []byte, msgType uint16, flags uint16, seq uint32, orig Tuple) ([]byte, error) {
	if err := checkTuple(orig); err != nil {
		return b, err
	}
	w, start := beginRequest(b, msgType, flags, seq, orig)
	w.tuple(ctaTupleOrig, orig, false)
	return w.finish(start), nil
}

func checkTuple(t Tuple) error {
	src, dst := t.Src.Addr().Unmap(), t.Dst.Addr().Unmap()
	if !src.IsValid() || !dst.IsValid() {
		return fmt.Errorf("%s: address missing", t)
	}
	if src.Is4() != dst.Is4() {
		return fmt.Errorf("%s: mixes IPv4 and IPv6", t)
	}
	return nil
}

// beginRequest appends a ctnetlink request's netlink and nfgenmsg headers
// for the family of orig; finish sets the length.
func beginRequest(b []byte, msgType uint16, flags uint16, seq uint32, orig Tuple) (attrWriter, int) {
	family := uint8(unix.AF_INET)
	if orig.Src.Addr().Unmap().Is6() {
		family = unix.AF_INET6
	}
	start := len(b)
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set by finish
	b = binary.NativeEndian.AppendUint16(b, nfnlSubsysCT<<8|msgType)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST|flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)     // port id: the kernel fills it
	b = append(b, family, unix.NFNETLINK_V0, 0, 0) // nfgenmsg, res_id 0
	return attrWriter{b: b}, start
}

// attrWriter appends netlink attributes; integers go in network byte
// order, as ctnetlink reads them. Every attribute it writes has a length
// that is a multiple of 4 but u8's, which it pads.
type attrWriter struct{ b []byte }

func (w *attrWriter) finish(start int) []byte {
	binary.NativeEndian.PutUint32(w.b[start:], uint32(len(w.b)-start))
	return w.b
}

func (w *attrWriter) hdr(typ uint16, dataLen int) {
	w.b = binary.NativeEndian.AppendUint16(w.b, uint16(4+dataLen))
	w.b = binary.NativeEndian.AppendUint16(w.b, typ)
}

func (w *attrWriter) u8(typ uint16, v uint8) {
	w.hdr(typ, 1)
	w.b = append(w.b, v, 0, 0, 0)
}

func (w *attrWriter) u16(typ uint16, v uint16) {
	w.hdr(typ, 2)
	w.b = binary.BigEndian.AppendUint16(w.b, v)
	w.b = append(w.b, 0, 0)
}

func (w *attrWriter) u32(typ uint16, v uint32) {
	w.hdr(typ, 4)
	w.b = binary.BigEndian.AppendUint32(w.b, v)
}

// addr writes a 4- or 16-byte address attribute.
func (w *attrWriter) addr(typ4, typ6 uint16, a netip.Addr) {
	a = a.Unmap()
	if a.Is4() {
		v := a.As4()
		w.hdr(typ4, 4)
		w.b = append(w.b, v[:]...)
		return
	}
	v := a.As16()
	w.hdr(typ6, 16)
	w.b = append(w.b, v[:]...)
}

// begin opens a nested attribute; end closes it.
func (w *attrWriter) begin(typ uint16) int {
	off := len(w.b)
	w.hdr(typ|nlaFNested, 0)
	return off
}

func (w *attrWriter) end(off int) {
	binary.NativeEndian.PutUint16(w.b[off:], uint16(len(w.b)-off))
}

// tuple writes a CTA_TUPLE_* attribute (checkTuple passed). ICMP tuples
// carry the echo identifier and the echo request type (reply: the echo
// reply type).
func (w *attrWriter) tuple(typ uint16, t Tuple, reply bool) {
	outer := w.begin(typ)
	ip := w.begin(ctaTupleIP)
	w.addr(ctaIPv4Src, ctaIPv6Src, t.Src.Addr())
	w.addr(ctaIPv4Dst, ctaIPv6Dst, t.Dst.Addr())
	w.end(ip)
	proto := w.begin(ctaTupleProto)
	w.u8(ctaProtoNum, t.Proto)
	switch t.Proto {
	case protoICMP:
		icmpType := uint8(8) // echo request
		if reply {
			icmpType = 0
		}
		w.u16(ctaProtoICMPID, t.ICMPID)
		w.u8(ctaProtoICMPType, icmpType)
		w.u8(ctaProtoICMPCode, 0)
	case protoICMPv6:
		icmpType := uint8(128)
		if reply {
			icmpType = 129
		}
		w.u16(ctaProtoICMPv6ID, t.ICMPID)
		w.u8(ctaProtoICMPv6Ty, icmpType)
		w.u8(ctaProtoICMPv6Co, 0)
	default:
		w.u16(ctaProtoSrcPort, t.Src.Port())
		w.u16(ctaProtoDstPort, t.Dst.Port())
	}
	w.end(proto)
	w.end(outer)
}

// natRange writes a CTA_NAT_SRC or CTA_NAT_DST binding exactly to to's
// address and port (the echo identifier id for ICMP).
func (w *attrWriter) natRange(typ uint16, to netip.AddrPort, id uint16, proto uint8) {
	nat := w.begin(typ)
	w.addr(ctaNATV4MinIP, ctaNATV6MinIP, to.Addr())
	w.addr(ctaNATV4MaxIP, ctaNATV6MaxIP, to.Addr())
	port, ported := to.Port(), true
	switch proto {
	case protoICMP, protoICMPv6:
		port = id
	case protoTCP, protoUDP, protoUDPLite, protoSCTP, protoDCCP:
	default:
		ported = false
	}
	if ported {
		p := w.begin(ctaNATProto)
		w.u16(ctaProtoNATPortMin, port)
		w.u16(ctaProtoNATPortMax, port)
		w.end(p)
	}
	w.end(nat)
}

// tcpStateOf is TCPStateName's inverse; "" is ESTABLISHED.
func tcpStateOf(name string) (uint8, bool) {
	if name == "" {
		return 3, true
	}
	for i, s := range tcpStates {
		if s == name {
			return uint8(i), true
		}
	}
	return 0, false
}
