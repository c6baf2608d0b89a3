package flowsync

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/hanat/hanat/conntrack"
)

func sampleRecords(t testing.TB) []record {
	t.Helper()
	flows := []conntrack.Flow{
		testFlow(1),
		testFlow(70000),
		{ // UDP
			Original: conntrack.Tuple{Proto: protoUDP, Src: netip.MustParseAddrPort("10.0.3.4:5353"), Dst: netip.MustParseAddrPort("198.51.100.53:53")},
			Reply:    conntrack.Tuple{Proto: protoUDP, Src: netip.MustParseAddrPort("198.51.100.53:53"), Dst: netip.MustParseAddrPort("10.0.1.10:5353")},
			Assured:  true, SNAT: true, Timeout: 120e9,
		},
		{ // ICMP echo, identifier translated
			Original: conntrack.Tuple{Proto: protoICMP, Src: netip.MustParseAddrPort("10.0.3.5:0"), Dst: netip.MustParseAddrPort("198.51.100.1:0"), ICMPID: 7},
			Reply:    conntrack.Tuple{Proto: protoICMP, Src: netip.MustParseAddrPort("198.51.100.1:0"), Dst: netip.MustParseAddrPort("10.0.1.10:0"), ICMPID: 7001},
			SNAT:     true, Timeout: 30e9,
		},
		{ // port forward, IPv6
			Original: tcp("[2001:db8::9]:50000", "[2001:db8:1::10]:8080"),
			Reply:    tcp("[fd00::20]:80", "[2001:db8::9]:50000"),
			TCPState: "CLOSE_WAIT", Assured: true, DNAT: true, Timeout: 200e9, Mark: 0xffffffff,
		},
	}
	recs := make([]record, len(flows))
	for i, f := range flows {
		r, err := recordOf(f)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = r
	}
	return recs
}

func sampleFrames(t testing.TB) []frame {
	recs := sampleRecords(t)
	return []frame{
		{kind: kindSnapshotBegin, snapshot: 7},
		{kind: kindSnapshotRecords, snapshot: 7, records: recs},
		{kind: kindSnapshotEnd, snapshot: 7, total: 5},
		{kind: kindUpsert, records: recs[1:3]},
		{kind: kindDelete, keys: []conntrack.Tuple{recs[0].orig, recs[3].orig, recs[4].orig}},
		{kind: kindKeepalive, ack: 1<<40 + 3},
		{kind: kindResync},
	}
}

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range sampleFrames(t) {
		b := appendFrame(nil, &f)
		got, err := decodeFrame(b)
		if err != nil {
			t.Fatalf("%s: %v", kindName(f.kind), err)
		}
		if f.records == nil && got.records != nil && len(got.records) == 0 {
			got.records = nil
		}
		if f.keys == nil && got.keys != nil && len(got.keys) == 0 {
			got.keys = nil
		}
		if !reflect.DeepEqual(got, f) {
			t.Errorf("%s: decoded\n%+v\nwant\n%+v", kindName(f.kind), got, f)
		}
	}
	// The records carry everything a takeover injects.
	for _, r := range sampleRecords(t) {
		back, err := recordOf(r.flow())
		if err != nil || back != r {
			t.Errorf("record %+v -> flow -> %+v, %v", r, back, err)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	recs := sampleRecords(t)
	good := appendFrame(nil, &frame{kind: kindUpsert, records: recs[:1]})
	v6 := appendFrame(nil, &frame{kind: kindUpsert, records: recs[4:]})
	withFlags := bytes.Clone(good)
	withFlags[3] |= 0x80 // the record's flags byte
	badState := bytes.Clone(good)
	badState[5] = 42
	hugeCount := appendFrame(nil, &frame{kind: kindDelete, keys: nil})
	hugeCount[1], hugeCount[2] = 0xff, 0xff
	for _, tc := range []struct {
		name, want string
		b          []byte
	}{
		{"empty", "truncated", nil},
		{"unknown kind", "unknown frame kind 99", []byte{99}},
		{"short of a record", "count 1 does not fit the 34 bytes", good[:len(good)-1]},
		{"truncated IPv6 record", "truncated", v6[:len(v6)-1]},
		{"trailing bytes", "1 bytes after the end", append(bytes.Clone(good), 0)},
		{"unknown record flags", "unknown flags 0x80", withFlags},
		{"TCP state out of range", "TCP state 42 out of range", badState},
		{"count beyond the frame", "count 65535 does not fit", hugeCount},
		{"oversized", "exceeds", make([]byte, maxPlaintext+1)},
	} {
		_, err := decodeFrame(tc.b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
		if tc.want == "truncated" && !errors.Is(err, errTruncated) {
			t.Errorf("%s: %v does not wrap errTruncated", tc.name, err)
		}
	}
}

// FuzzDecodeFrame: no input panics the decoder, and whatever it accepts
// encodes back to the same bytes.
//
//	go test ./flowsync/ -run '^$' -fuzz FuzzDecodeFrame -fuzztime 60s
func FuzzDecodeFrame(f *testing.F) {
	for _, fr := range sampleFrames(f) {
		f.Add(appendFrame(nil, &fr))
	}
	f.Add([]byte{})
	f.Add([]byte{kindUpsert, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b)
		if err != nil {
			return
		}
		again := appendFrame(nil, &fr)
		if !bytes.Equal(again, b) {
			t.Fatalf("decoded %+v re-encodes as %x, input %x", fr, again, b)
		}
	})
}
