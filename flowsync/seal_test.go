package flowsync

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
)

func TestSessionSealsAndRejects(t *testing.T) {
	s, r, err := sessionPair(testKey, testKey, func() io.Reader { return rand.Reader })
	if err != nil {
		t.Fatal(err)
	}
	m1 := s.out.seal([]byte("first"))
	m2 := s.out.seal([]byte("second"))
	m3 := s.out.seal([]byte("third"))
	if bytes.Contains(m1, []byte("first")) {
		t.Error("the plaintext shows in the sealed message")
	}
	if p, seq, lost, err := r.in.open(m1); err != nil || string(p) != "first" || seq != 1 || lost != 0 {
		t.Fatalf("open m1 = %q, %d, %d, %v", p, seq, lost, err)
	}
	if _, _, _, err := r.in.open(m1); !errors.Is(err, errReplay) {
		t.Errorf("m1 again: %v, want a replay", err)
	}
	tampered := bytes.Clone(m2)
	tampered[len(tampered)-1] ^= 1
	if _, _, _, err := r.in.open(tampered); !errors.Is(err, errAuth) {
		t.Errorf("tampered m2: %v, want an authentication failure", err)
	}
	renumbered := bytes.Clone(m2)
	renumbered[12]++ // the sequence is authenticated too
	if _, _, _, err := r.in.open(renumbered); !errors.Is(err, errAuth) {
		t.Errorf("renumbered m2: %v, want an authentication failure", err)
	}
	// m2 lost: m3 says one message is missing; m2 then comes too late.
	if p, seq, lost, err := r.in.open(m3); err != nil || string(p) != "third" || seq != 3 || lost != 1 {
		t.Errorf("open m3 = %q, %d, %d, %v; want one lost", p, seq, lost, err)
	}
	if _, _, _, err := r.in.open(m2); !errors.Is(err, errReplay) {
		t.Errorf("late m2: %v, want a replay", err)
	}
	// Sessions whose sides drew the same session id (from a reader that
	// repeats itself): only the keys tell directions and sessions apart.
	same := func() io.Reader { return io.MultiReader(bytes.NewReader([]byte{0, 0, 0, 1}), rand.Reader) }
	s1, r1, err := sessionPair(testKey, testKey, same)
	if err != nil {
		t.Fatal(err)
	}
	old := s1.out.seal([]byte("old"))
	// Each direction has its own key: a sender's message reflected back
	// to it does not open.
	if _, _, _, err := s1.in.open(old); !errors.Is(err, errAuth) {
		t.Errorf("reflected message: %v, want an authentication failure", err)
	}
	// A message of an earlier session does not open in a new one.
	s2, r2, err := sessionPair(testKey, testKey, same)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := r2.in.open(old); !errors.Is(err, errAuth) {
		t.Errorf("old session's message in a new session: %v, want an authentication failure", err)
	}
	if _, _, _, err := r2.in.open(s2.out.seal([]byte("x"))); err != nil {
		t.Errorf("new session: %v", err)
	}
	if _, _, _, err := r1.in.open(old); err != nil {
		t.Errorf("old session: %v", err)
	}

	// Another key: the handshake completes (hellos are in the clear) but
	// nothing opens.
	s3, r3, err := sessionPair(testKey, []byte("another pair key of 32 bytes!!!!"), func() io.Reader { return rand.Reader })
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := r3.in.open(s3.out.seal([]byte("x"))); !errors.Is(err, errAuth) {
		t.Errorf("wrong key: %v, want an authentication failure", err)
	}
	if _, _, err := sessionPair([]byte("short"), []byte("short"), func() io.Reader { return rand.Reader }); err == nil {
		t.Error("a 5-byte key was accepted")
	}
}

func TestHelloRejects(t *testing.T) {
	h := hello{role: roleSender, session: 9}
	b := h.marshal()
	if _, err := parseHello(b, roleReceiver); err == nil {
		t.Error("a sender's hello accepted as a receiver's")
	}
	b[4] = 2
	if _, err := parseHello(b, roleSender); err == nil {
		t.Error("a hello of version 2 accepted")
	}
	if _, err := parseHello(b[:10], roleSender); err == nil {
		t.Error("a short hello accepted")
	}
}
