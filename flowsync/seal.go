package flowsync

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// A session is one connection between a sender and its peer's receiver.
// It opens with two hellos in the clear, the sender's first:
//
//	magic "HNFS" | version u8 | role u8 (1 sender, 2 receiver) | session id u32 | random [16]
//
// Each direction then has its own AES-256-GCM key, derived with HKDF-SHA256
// from the pair's shared key (ha.key_file) with both hellos as the salt, so
// every session has fresh keys: a message recorded in one session fails
// authentication in any other. A sealed message is
//
//	version u8 | session id u32 (the sending side's) | sequence u64 | ciphertext and tag
//
// with the first 13 bytes as additional data and the nonce being the
// session id and the sequence. Sequences start at 1 and only go up: a
// message whose sequence is not above every one accepted before is a
// replay and is dropped; one that skips sequences says messages were lost
// (the receiver then asks for a snapshot).
const (
	helloMagic   = "HNFS"
	wireVersion  = 1
	helloLen     = 4 + 1 + 1 + 4 + 16
	sealedHeader = 1 + 4 + 8
	roleSender   = 1
	roleReceiver = 2
	// MinKeyLen is the shortest shared key accepted, as for the heartbeat.
	MinKeyLen = 16

	infoSenderToReceiver = "hanat flowsync v1 sender to receiver"
	infoReceiverToSender = "hanat flowsync v1 receiver to sender"
)

// Errors of open; each is counted apart.
var (
	// errAuth: the message does not authenticate under the session's key
	// (another key, forged or damaged), or names another session.
	errAuth = errors.New("message fails authentication")
	// errReplay: an authentic message whose sequence was seen or passed.
	errReplay = errors.New("message replayed")
)

type hello struct {
	role    uint8
	session uint32
	random  [16]byte
}

func (h hello) marshal() []byte {
	b := make([]byte, 0, helloLen)
	b = append(b, helloMagic...)
	b = append(b, wireVersion, h.role)
	b = binary.BigEndian.AppendUint32(b, h.session)
	return append(b, h.random[:]...)
}

func parseHello(b []byte, role uint8) (hello, error) {
	if len(b) != helloLen || string(b[:4]) != helloMagic {
		return hello{}, fmt.Errorf("not a flowsync hello (%d bytes)", len(b))
	}
	if b[4] != wireVersion {
		return hello{}, fmt.Errorf("hello of protocol version %d, this node speaks %d", b[4], wireVersion)
	}
	if b[5] != role {
		return hello{}, fmt.Errorf("hello from role %d, want %d", b[5], role)
	}
	h := hello{role: b[5], session: binary.BigEndian.Uint32(b[6:])}
	copy(h.random[:], b[10:])
	return h, nil
}

// session seals what this side sends and opens what it receives.
type session struct {
	out sealer
	in  opener
}

// newSession derives the session's keys from the shared key and both
// hellos. self is this side's role.
func newSession(key []byte, sender, receiver hello, self uint8) (*session, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("shared key of %d bytes, at least %d", len(key), MinKeyLen)
	}
	salt := append(sender.marshal(), receiver.marshal()...)
	aeadFor := func(info string) (cipher.AEAD, error) {
		k, err := hkdf.Key(sha256.New, key, salt, info, 32)
		if err != nil {
			return nil, fmt.Errorf("derive key %q: %w", info, err)
		}
		blk, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(blk)
	}
	s2r, err := aeadFor(infoSenderToReceiver)
	if err != nil {
		return nil, err
	}
	r2s, err := aeadFor(infoReceiverToSender)
	if err != nil {
		return nil, err
	}
	if self == roleSender {
		return &session{out: sealer{aead: s2r, id: sender.session}, in: opener{aead: r2s, id: receiver.session}}, nil
	}
	return &session{out: sealer{aead: r2s, id: receiver.session}, in: opener{aead: s2r, id: sender.session}}, nil
}

// handshake exchanges hellos over l (the sender speaks first) and returns
// the session. random supplies the session id and the hello's random.
func handshake(ctx context.Context, l link, key []byte, self uint8, random io.Reader) (*session, error) {
	var mine hello
	mine.role = self
	var idb [4]byte
	if _, err := io.ReadFull(random, idb[:]); err != nil {
		return nil, fmt.Errorf("session id: %w", err)
	}
	mine.session = binary.BigEndian.Uint32(idb[:])
	if _, err := io.ReadFull(random, mine.random[:]); err != nil {
		return nil, fmt.Errorf("hello random: %w", err)
	}
	other := uint8(roleReceiver)
	if self == roleReceiver {
		other = roleSender
	}
	var theirs hello
	exchange := []func() error{
		func() error { return l.send(ctx, mine.marshal()) },
		func() error {
			b, err := l.recv(ctx)
			if err != nil {
				return err
			}
			theirs, err = parseHello(b, other)
			return err
		},
	}
	if self == roleReceiver {
		exchange[0], exchange[1] = exchange[1], exchange[0]
	}
	for _, step := range exchange {
		if err := step(); err != nil {
			return nil, fmt.Errorf("handshake: %w", err)
		}
	}
	if self == roleSender {
		return newSession(key, mine, theirs, self)
	}
	return newSession(key, theirs, mine, self)
}

type sealer struct {
	aead cipher.AEAD
	id   uint32
	seq  uint64
}

// seal encrypts plain as the next message of the session.
func (s *sealer) seal(plain []byte) []byte {
	s.seq++
	msg := make([]byte, sealedHeader, sealedHeader+len(plain)+s.aead.Overhead())
	msg[0] = wireVersion
	binary.BigEndian.PutUint32(msg[1:], s.id)
	binary.BigEndian.PutUint64(msg[5:], s.seq)
	return s.aead.Seal(msg, msg[1:sealedHeader], plain, msg[:sealedHeader])
}

type opener struct {
	aead cipher.AEAD
	id   uint32
	last uint64 // highest sequence accepted
}

// open authenticates msg and accepts it if its sequence is past every one
// accepted before; lost is how many sequences it skipped.
func (o *opener) open(msg []byte) (plain []byte, seq, lost uint64, err error) {
	if len(msg) < sealedHeader+o.aead.Overhead() || msg[0] != wireVersion || binary.BigEndian.Uint32(msg[1:]) != o.id {
		return nil, 0, 0, errAuth
	}
	seq = binary.BigEndian.Uint64(msg[5:])
	plain, err = o.aead.Open(nil, msg[1:sealedHeader], msg[sealedHeader:], msg[:sealedHeader])
	if err != nil {
		return nil, 0, 0, errAuth
	}
	if seq <= o.last {
		return nil, seq, 0, fmt.Errorf("%w: sequence %d, %d already accepted", errReplay, seq, o.last)
	}
	lost = seq - o.last - 1
	o.last = seq
	return plain, seq, lost, nil
}
