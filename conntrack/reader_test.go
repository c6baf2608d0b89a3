//go:build linux

package conntrack

import (
	"context"
	"slices"
	"testing"

	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// scriptedSocket plays the event socket for readLoop: each read takes the
// next datagram (nil: the socket is empty), recording whether the reader
// would have blocked; the reader's pauses are recorded in the same trace.
type scriptedSocket struct {
	t      *testing.T
	script [][]byte
	trace  []string
	cancel context.CancelFunc
}

func (s *scriptedSocket) recv(buf []byte, block bool) (int, int, error) {
	op := "read"
	if block {
		op = "block"
	}
	if len(s.script) == 0 {
		s.trace = append(s.trace, op+":end")
		s.cancel()
		return 0, 0, unix.EBADF
	}
	d := s.script[0]
	s.script = s.script[1:]
	if d == nil {
		if block {
			s.t.Fatalf("a blocking read returned nothing (trace %v)", s.trace)
		}
		s.trace = append(s.trace, op+":empty")
		return 0, 0, unix.EAGAIN
	}
	s.trace = append(s.trace, op)
	return copy(buf, d), 0, nil
}

func (s *scriptedSocket) pause(context.Context) { s.trace = append(s.trace, "pause") }

// A burst of events is read without a pause between them; the reader
// pauses once the socket is drained (the events of a storm gather in the
// socket meanwhile), and the read after a pause blocks: it returns what
// gathered, or waits for the next event. One pause per burst, not one
// wake-up per event.
func TestReadLoopGathersBursts(t *testing.T) {
	ev := flowMsg(t, 0, 0, 7, ct.StatusSrcNAT, snatPair[0], snatPair[1])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &scriptedSocket{t: t, cancel: cancel, script: [][]byte{
		ev, // the first event after an idle time
		nil,
		ev, ev, // gathered during the pause
		nil,
		ev, // after a pause that gathered nothing
	}}
	var got int
	if err := readLoop(ctx, nil, s.recv, s.pause, func(Event) { got++ }, func() { t.Error("overflow") }); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"block",
		"read:empty", "pause",
		"block", "read",
		"read:empty", "pause",
		"block",
		"read:end",
	}
	if got != 4 || !slices.Equal(s.trace, want) {
		t.Errorf("%d events, trace\n%v, want 4 and\n%v", got, s.trace, want)
	}
}

// decodeDatagram emits every event of a datagram, skipping (and
// reporting) a message it cannot decode.
func TestDecodeDatagram(t *testing.T) {
	ev := flowMsg(t, 0, 0, 7, ct.StatusSrcNAT, snatPair[0], snatPair[1])
	bad := rawMsg(ctNewType, 0, 0, []byte{2, 0, 0, 0, 5, 0, 1})
	var got []Event
	err := decodeDatagram(slices.Concat(ev, bad, ev), func(e Event) { got = append(got, e) })
	if err == nil || len(got) != 2 || got[0].Flow.ID != 7 || got[1].Flow.ID != 7 || got[0].Kind != EventUpdate {
		t.Errorf("events %+v, err %v; want two of flow 7 and an error", got, err)
	}
	if err := decodeDatagram([]byte{1, 2, 3}, func(Event) { t.Error("event from garbage") }); err == nil {
		t.Error("garbage decoded without an error")
	}
}
