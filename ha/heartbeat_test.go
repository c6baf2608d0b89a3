package ha

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef-test-key")

func testMsg(seq uint64, at time.Time) *Message {
	return &Message{NodeID: "i-0abc", ENI: "eni-0abc", Epoch: 42, Seq: seq, Ack: 7, Time: at, Healthy: true,
		Home: []string{"rtb-a1"}, Owned: []string{"rtb-a1", "rtb-c1"}, Wanted: []string{"rtb-c2"}, Offered: nil}
}

func TestHeartbeatRoundTrip(t *testing.T) {
	at := time.Unix(1_700_000_000, 123456789)
	m := testMsg(3, at)
	m.Maintenance, m.Healthy, m.Reason = true, false, "upstream check failed: 203.0.113.10:80: timeout"
	b, err := m.Marshal(testKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(at) {
		t.Errorf("time %v, want %v", got.Time, at)
	}
	got.Time = m.Time
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, m)
	}
}

func TestHeartbeatRejects(t *testing.T) {
	at := time.Unix(1_700_000_000, 0)
	good, err := testMsg(1, at).Marshal(testKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unmarshal(good, []byte("another-key-of-16-bytes")); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("wrong key: %v", err)
	}
	flipped := bytes.Clone(good)
	flipped[10] ^= 1
	if _, err := Unmarshal(flipped, testKey); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("flipped bit: %v", err)
	}
	for _, b := range [][]byte{nil, good[:10], bytes.Repeat([]byte{0}, MaxDatagram+1)} {
		if _, err := Unmarshal(b, testKey); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d bytes: %v, want malformed", len(b), err)
		}
	}
	// Correctly signed but malformed bodies.
	body := good[:len(good)-macSize]
	for name, mutate := range map[string]func([]byte) []byte{
		"magic":    func(b []byte) []byte { b[0] = 'X'; return b },
		"version":  func(b []byte) []byte { b[4] = 9; return b },
		"flags":    func(b []byte) []byte { b[5] = 0x80; return b },
		"trailing": func(b []byte) []byte { return append(b, 0) },
		"truncate": func(b []byte) []byte { return b[:len(b)-3] },
	} {
		b := mutate(bytes.Clone(body))
		b = append(b, sign(testKey, b)...)
		if _, err := Unmarshal(b, testKey); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
	bad := testMsg(1, at)
	bad.Owned = []string{"rtb a1"}
	if _, err := bad.Marshal(testKey); err == nil {
		t.Error("marshalled a table id with a space")
	}
	bad = testMsg(0, at)
	b, _ := bad.Marshal(testKey)
	if _, err := Unmarshal(b, testKey); !errors.Is(err, ErrMalformed) {
		t.Errorf("seq 0: %v", err)
	}
}

func TestReceiverDropsReplayStaleSelf(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	r := NewReceiver(testKey, "i-self", 10*time.Second)
	enc := func(m *Message) []byte {
		b, err := m.Marshal(testKey)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if m, reason, err := r.Accept(enc(testMsg(5, now)), now); m == nil {
		t.Fatalf("fresh heartbeat dropped: %s %v", reason, err)
	}
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"replayed":    {enc(testMsg(5, now)), DropReplay},
		"older seq":   {enc(testMsg(4, now)), DropReplay},
		"stale":       {enc(testMsg(9, now.Add(-time.Minute))), DropStale},
		"future":      {enc(testMsg(9, now.Add(time.Minute))), DropStale},
		"own id":      {enc(&Message{NodeID: "i-self", Epoch: 1, Seq: 1, Time: now}), DropSelf},
		"bad mac":     {append(enc(testMsg(9, now))[:20], make([]byte, 40)...), DropUnauthenticated},
		"garbage":     {[]byte("hello"), DropMalformed},
		"older epoch": {enc(&Message{NodeID: "i-0abc", Epoch: 41, Seq: 100, Time: now}), DropReplay},
	} {
		if m, reason, _ := r.Accept(tc.b, now); m != nil || reason != tc.want {
			t.Errorf("%s: accepted=%v reason=%q, want %q", name, m != nil, reason, tc.want)
		}
	}
	// A gap counts as loss; a new epoch (restart) starts over.
	if m, _, _ := r.Accept(enc(testMsg(8, now)), now); m == nil {
		t.Fatal("seq 8 dropped")
	}
	restarted := testMsg(1, now)
	restarted.Epoch = 43
	if m, reason, err := r.Accept(enc(restarted), now); m == nil {
		t.Fatalf("new epoch dropped: %s %v", reason, err)
	}
	st := r.Stats()
	if st.Accepted != 3 || st.Lost != 2 {
		t.Errorf("stats %+v, want 3 accepted, 2 lost", st)
	}
	if st.Dropped[DropReplay] != 3 || st.Dropped[DropStale] != 2 || st.Dropped[DropSelf] != 1 ||
		st.Dropped[DropUnauthenticated] != 1 || st.Dropped[DropMalformed] != 1 {
		t.Errorf("drops %v", st.Dropped)
	}
}

func TestReadKey(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ha.key")
	if err := os.WriteFile(p, []byte("  0123456789abcdefXYZ\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := ReadKey(p)
	if err != nil || string(k) != "0123456789abcdefXYZ" {
		t.Fatalf("ReadKey = %q, %v", k, err)
	}
	os.Chmod(p, 0o640)
	if _, err := ReadKey(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable key: %v", err)
	}
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("short"), 0o600)
	if _, err := ReadKey(short); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("short key: %v", err)
	}
	if _, err := ReadKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing key file accepted")
	}
}

// FuzzUnmarshal: no input panics; what decodes re-encodes to the same
// bytes (a signed message has one encoding).
func FuzzUnmarshal(f *testing.F) {
	at := time.Unix(1_700_000_000, 0)
	good, _ := testMsg(1, at).Marshal(testKey)
	f.Add(good)
	f.Add(good[:len(good)-macSize])
	f.Add([]byte("HNHB"))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Sign whatever body the fuzzer made so decoding is exercised,
		// not only the MAC check.
		signed := append(bytes.Clone(b), sign(testKey, b)...)
		for _, in := range [][]byte{b, signed} {
			m, err := Unmarshal(in, testKey)
			if err != nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnauthenticated) {
					t.Fatalf("unclassified error %v", err)
				}
				continue
			}
			again, err := m.Marshal(testKey)
			if err != nil {
				t.Fatalf("decoded message does not encode: %v", err)
			}
			if !bytes.Equal(again, in) {
				t.Fatalf("re-encoding differs")
			}
		}
	})
}
