package ha

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Heartbeat wire format (version 1), big-endian, one UDP datagram:
//
//	magic "HNHB" | version u8 | flags u8 |
//	node id (u8 length + bytes) | ENI id (u8 length + bytes) |
//	epoch u64 | seq u64 | ack u64 | timestamp i64 (unix ns) |
//	reason (u8 length + bytes) |
//	home, owned, wanted, offered: each u8 count + (u8 length + bytes)… |
//	HMAC-SHA256 over everything before it (32 bytes)
//
// The epoch is the sender's start time: a restarted node starts a new
// epoch, so its sequence numbers may start again from 1.
const (
	wireMagic   = "HNHB"
	wireVersion = 1
	macSize     = sha256.Size
	// MaxDatagram bounds a heartbeat; larger datagrams are malformed.
	MaxDatagram = 4096
	// maxIDLen bounds node, ENI and route table ids on the wire.
	maxIDLen = 64
	// maxTables bounds each table list on the wire.
	maxTables = 32
	// maxReasonLen bounds the health reason.
	maxReasonLen = 200
	// MinKeyLen is the shortest accepted shared key.
	MinKeyLen = 16
)

// Flags of a heartbeat.
const (
	flagHealthy     = 1 << 0
	flagMaintenance = 1 << 1
	flagKnown       = flagHealthy | flagMaintenance
)

// Message is one heartbeat.
type Message struct {
	NodeID string // instance id of the sender
	ENI    string // the sender's ENI, where its routes point
	Epoch  uint64 // sender's start (unix ns); a new epoch resets sequence checks
	Seq    uint64 // per epoch, from 1
	// Ack is the highest Seq the sender accepted from the receiver (0: none
	// yet); a handshake waits for the peer to have seen its request.
	Ack         uint64
	Time        time.Time
	Healthy     bool
	Maintenance bool
	Reason      string   // why unhealthy ("" when healthy)
	Home        []string // the sender's home route tables
	Owned       []string // tables the sender claims (points at itself)
	Wanted      []string // tables the sender asks the receiver to release
	Offered     []string // tables the sender gives to the receiver
}

// Marshal encodes m and signs it with key.
func (m *Message) Marshal(key []byte) ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, wireMagic...)
	b = append(b, wireVersion)
	var flags byte
	if m.Healthy {
		flags |= flagHealthy
	}
	if m.Maintenance {
		flags |= flagMaintenance
	}
	b = append(b, flags)
	var err error
	if b, err = appendString(b, "node id", m.NodeID, maxIDLen); err != nil {
		return nil, err
	}
	if b, err = appendString(b, "eni", m.ENI, maxIDLen); err != nil {
		return nil, err
	}
	b = binary.BigEndian.AppendUint64(b, m.Epoch)
	b = binary.BigEndian.AppendUint64(b, m.Seq)
	b = binary.BigEndian.AppendUint64(b, m.Ack)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Time.UnixNano()))
	reason := m.Reason
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	if b, err = appendString(b, "reason", reason, maxReasonLen); err != nil {
		return nil, err
	}
	for _, l := range []struct {
		name string
		ids  []string
	}{{"home", m.Home}, {"owned", m.Owned}, {"wanted", m.Wanted}, {"offered", m.Offered}} {
		if len(l.ids) > maxTables {
			return nil, fmt.Errorf("heartbeat %s: %d tables, at most %d", l.name, len(l.ids), maxTables)
		}
		b = append(b, byte(len(l.ids)))
		for _, id := range l.ids {
			if b, err = appendString(b, l.name+" table", id, maxIDLen); err != nil {
				return nil, err
			}
			if err := checkID(id); err != nil {
				return nil, fmt.Errorf("heartbeat %s table %q: %w", l.name, id, err)
			}
		}
	}
	if len(b)+macSize > MaxDatagram {
		return nil, fmt.Errorf("heartbeat of %d bytes exceeds %d", len(b)+macSize, MaxDatagram)
	}
	return append(b, sign(key, b)...), nil
}

func appendString(b []byte, what, s string, max int) ([]byte, error) {
	if len(s) > max {
		return nil, fmt.Errorf("heartbeat %s %q: longer than %d bytes", what, s, max)
	}
	b = append(b, byte(len(s)))
	return append(b, s...), nil
}

func sign(key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(nil)
}

// Decode errors, told apart so they are counted separately.
var (
	ErrMalformed       = errors.New("malformed heartbeat")
	ErrUnauthenticated = errors.New("heartbeat fails authentication")
)

// Unmarshal checks the HMAC of b with key and decodes it. A wrong MAC is
// ErrUnauthenticated; anything else wrong (size, magic, version, lengths,
// trailing bytes, bad ids) wraps ErrMalformed. It never panics.
func Unmarshal(b, key []byte) (*Message, error) {
	if len(b) > MaxDatagram {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(b), MaxDatagram)
	}
	if len(b) < len(wireMagic)+2+macSize {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrMalformed, len(b))
	}
	body, mac := b[:len(b)-macSize], b[len(b)-macSize:]
	if !hmac.Equal(mac, sign(key, body)) {
		return nil, ErrUnauthenticated
	}
	return decodeBody(body)
}

func decodeBody(body []byte) (*Message, error) {
	r := reader{b: body}
	if string(r.bytes(len(wireMagic))) != wireMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	if v := r.u8(); v != wireVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrMalformed, v, wireVersion)
	}
	flags := r.u8()
	if flags&^flagKnown != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, flags)
	}
	m := &Message{Healthy: flags&flagHealthy != 0, Maintenance: flags&flagMaintenance != 0}
	m.NodeID = r.str(maxIDLen)
	m.ENI = r.str(maxIDLen)
	m.Epoch = r.u64()
	m.Seq = r.u64()
	m.Ack = r.u64()
	m.Time = time.Unix(0, int64(r.u64()))
	m.Reason = r.str(maxReasonLen)
	lists := []*[]string{&m.Home, &m.Owned, &m.Wanted, &m.Offered}
	for _, l := range lists {
		n := int(r.u8())
		if n > maxTables {
			return nil, fmt.Errorf("%w: %d tables in a list, at most %d", ErrMalformed, n, maxTables)
		}
		for i := 0; i < n && r.err == nil; i++ {
			*l = append(*l, r.str(maxIDLen))
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b))
	}
	if m.NodeID == "" {
		return nil, fmt.Errorf("%w: empty node id", ErrMalformed)
	}
	if err := checkID(m.NodeID); err != nil {
		return nil, fmt.Errorf("%w: node id: %v", ErrMalformed, err)
	}
	if m.ENI != "" {
		if err := checkID(m.ENI); err != nil {
			return nil, fmt.Errorf("%w: eni: %v", ErrMalformed, err)
		}
	}
	if m.Seq == 0 {
		return nil, fmt.Errorf("%w: sequence number 0", ErrMalformed)
	}
	for _, l := range lists {
		for _, id := range *l {
			if err := checkID(id); err != nil {
				return nil, fmt.Errorf("%w: route table %q: %v", ErrMalformed, id, err)
			}
		}
	}
	for _, c := range m.Reason {
		if c < 0x20 || c == 0x7f {
			return nil, fmt.Errorf("%w: control character in reason", ErrMalformed)
		}
	}
	return m, nil
}

// checkID accepts AWS-style ids: 1..64 of [A-Za-z0-9._:-].
func checkID(s string) error {
	if s == "" || len(s) > maxIDLen {
		return fmt.Errorf("id must be 1-%d characters", maxIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return fmt.Errorf("invalid character %q", c)
		}
	}
	return nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = errors.New("truncated")
		r.b = nil
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() byte {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u64() uint64 {
	b := r.bytes(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func (r *reader) str(max int) string {
	n := int(r.u8())
	if r.err == nil && n > max {
		r.err = fmt.Errorf("string of %d bytes, at most %d", n, max)
		return ""
	}
	return string(r.bytes(n))
}

// ReadKey reads the shared heartbeat key from path. The file must not be
// readable or writable by group or others (0600 or stricter), and holds
// at least MinKeyLen bytes; surrounding whitespace is ignored.
func ReadKey(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("ha key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("ha key file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("ha key file %s: mode %#o lets group or others read it; chmod 600 %s", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ha key file: %w", err)
	}
	key := []byte(strings.TrimSpace(string(b)))
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("ha key file %s: %d bytes of key, at least %d (e.g. head -c 32 /dev/urandom | base64 > %s)", path, len(key), MinKeyLen, path)
	}
	return key, nil
}

// Drop reasons of received datagrams.
const (
	DropMalformed       = "malformed"
	DropUnauthenticated = "unauthenticated"
	DropReplay          = "replay"
	DropStale           = "stale"
	DropSelf            = "own_node_id"
	DropForeign         = "unexpected_source"
)

// Receiver authenticates heartbeats and rejects replays and stale ones.
// It is not safe for concurrent use.
type Receiver struct {
	key    []byte
	self   string
	maxAge time.Duration

	peer      string // node id of the last accepted sender
	epoch     uint64
	seq       uint64
	lastAt    time.Time
	accepted  uint64
	lost      uint64
	dropped   map[string]uint64
	lastDrop  string
	lastDropE error
}

// NewReceiver returns a receiver for key that drops its own node id and
// datagrams whose timestamp is more than maxAge away from the local
// clock.
func NewReceiver(key []byte, self string, maxAge time.Duration) *Receiver {
	return &Receiver{key: key, self: self, maxAge: maxAge, dropped: map[string]uint64{}}
}

// Accept checks one datagram received at now. It returns the message, or
// the drop reason (one of the Drop* constants) and why.
func (r *Receiver) Accept(b []byte, now time.Time) (*Message, string, error) {
	m, err := Unmarshal(b, r.key)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return r.drop(DropUnauthenticated, err)
	case err != nil:
		return r.drop(DropMalformed, err)
	}
	if m.NodeID == r.self {
		return r.drop(DropSelf, fmt.Errorf("heartbeat carries our own node id %q (looped back or a misconfigured peer)", m.NodeID))
	}
	if d := now.Sub(m.Time); d > r.maxAge || d < -r.maxAge {
		return r.drop(DropStale, fmt.Errorf("heartbeat from %s is %v away from our clock (more than %v)", m.NodeID, d.Round(time.Millisecond), r.maxAge))
	}
	if m.NodeID == r.peer {
		if m.Epoch < r.epoch || (m.Epoch == r.epoch && m.Seq <= r.seq) {
			return r.drop(DropReplay, fmt.Errorf("heartbeat from %s epoch %d seq %d is not newer than epoch %d seq %d", m.NodeID, m.Epoch, m.Seq, r.epoch, r.seq))
		}
		if m.Epoch == r.epoch {
			r.lost += m.Seq - r.seq - 1
		}
	}
	r.peer, r.epoch, r.seq, r.lastAt = m.NodeID, m.Epoch, m.Seq, now
	r.accepted++
	return m, "", nil
}

func (r *Receiver) drop(reason string, err error) (*Message, string, error) {
	r.dropped[reason]++
	r.lastDrop, r.lastDropE = reason, err
	return nil, reason, err
}

// Foreign counts a datagram from an address that is not the peer's.
func (r *Receiver) Foreign() { r.dropped[DropForeign]++ }

// ReceiverStats are the receiver's counters.
type ReceiverStats struct {
	Accepted uint64
	Lost     uint64 // sequence gaps within an epoch
	Dropped  map[string]uint64
	LastSeq  uint64
}

// Loss is the share of the peer's heartbeats lost (0 before any).
func (r ReceiverStats) Loss() float64 {
	total := r.Accepted + r.Lost
	if total == 0 {
		return 0
	}
	return float64(r.Lost) / float64(total)
}

// Named adds the heartbeat counters to counters (Counters.Named) by
// name: heartbeats_accepted, heartbeats_lost, heartbeats_dropped_<why>.
func (r ReceiverStats) Named(counters map[string]uint64) map[string]uint64 {
	counters["heartbeats_accepted"] = r.Accepted
	counters["heartbeats_lost"] = r.Lost
	for reason, n := range r.Dropped {
		counters["heartbeats_dropped_"+reason] = n
	}
	return counters
}

// Stats returns a copy of the counters.
func (r *Receiver) Stats() ReceiverStats {
	d := make(map[string]uint64, len(r.dropped))
	for k, v := range r.dropped {
		d[k] = v
	}
	return ReceiverStats{Accepted: r.accepted, Lost: r.lost, Dropped: d, LastSeq: r.seq}
}
