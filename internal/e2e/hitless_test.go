package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// chargenPattern is what the lab's chargen server repeats.
func chargenPattern() []byte {
	line := make([]byte, 0, 74*95)
	for i := range 95 {
		for j := range 72 {
			line = append(line, byte(' '+(i+j)%95))
		}
		line = append(line, '\r', '\n')
	}
	return line
}

// stream is one long-lived download from a private host, checked byte by
// byte against the server's pattern.
type stream struct {
	mu       sync.Mutex
	conn     net.Conn
	read     int64
	last     time.Time
	worst    time.Duration // longest wait for data
	worstAt  time.Time
	err      error
	corrupt  bool
	finished chan struct{}
}

func (s *stream) run(pattern []byte) {
	defer close(s.finished)
	buf := make([]byte, 32<<10)
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := s.conn.Read(buf)
		now := time.Now()
		s.mu.Lock()
		if n > 0 {
			for i := range n {
				if buf[i] != pattern[(s.read+int64(i))%int64(len(pattern))] {
					s.corrupt = true
					break
				}
			}
			s.read += int64(n)
			if gap := now.Sub(s.last); gap > s.worst {
				s.worst, s.worstAt = gap, now
			}
			s.last = now
		}
		if err != nil {
			s.err = err
		}
		done := err != nil || s.corrupt
		s.mu.Unlock()
		if done {
			return
		}
		// Pace the download so the flows stay long-lived but light.
		time.Sleep(20 * time.Millisecond)
	}
}

// worstSince is the longest wait for data since t (including the wait
// going on now).
func (s *stream) worstSince(t time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := time.Duration(0)
	if s.worstAt.After(t) {
		w = s.worst
	}
	if cur := time.Since(s.last); cur > w {
		w = cur
	}
	return w
}

// TestHitlessCrashFailover: with the pair's state sync (ha.sync, on by
// default) and an EIP per zone, established connections from app-a
// survive nat-a's crash: nat-c injects nat-a's synced flows, moves
// nat-a's EIP to its standby address and then the route, and every
// stream continues byte-exact with the same public address (a changed
// address or a missing conntrack entry would reset or stall them).
func TestHitlessCrashFailover(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the HA lab needs root (network namespaces)")
	}
	p := setupHAPair(t, "")
	allocA := p.lab.EIPAllocationID(p.lab.Instance("nat-a").PublicIP)
	allocC := p.lab.EIPAllocationID(p.lab.Instance("nat-c").PublicIP)
	if allocA == "" || allocC == "" {
		t.Fatalf("no allocation ids for the NATs' EIPs (%q, %q)", allocA, allocC)
	}
	p.kill("nat-a")
	p.kill("nat-c")
	p.extra = fmt.Sprintf("  eips:\n    - allocation_id: %s\n      route_tables: [%s]\n    - allocation_id: %s\n      route_tables: [%s]\n",
		allocA, p.rtbA, allocC, p.rtbC)
	p.start(t, "nat-a")
	p.start(t, "nat-c")
	p.waitPeers(t, 20*time.Second)
	p.waitRoutes(t, "restarted with the EIP groups", 10*time.Second, p.eniA, p.eniC)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	syncUp := func(what string, ok func(a, c syncView) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		var a, c syncView
		for time.Now().Before(deadline) {
			a, c = p.syncOf(ctx, t, "nat-a"), p.syncOf(ctx, t, "nat-c")
			if ok(a, c) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: not within 30s; nat-a %+v, nat-c %+v", what, a, c)
	}
	syncUp("the sync connected both ways", func(a, c syncView) bool {
		return a.Enabled && c.Enabled && a.SentConnected && c.HeldConnected && c.Standby != ""
	})

	const n = 8
	pattern := chargenPattern()
	chargen := p.lab.Internet().ChargenAddr.String()
	var streams []*stream
	for i := range n {
		c, err := p.lab.Dial(ctx, "app-a", "tcp4", chargen)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		s := &stream{conn: c, last: time.Now(), finished: make(chan struct{})}
		streams = append(streams, s)
		go s.run(pattern)
		defer c.Close()
	}
	syncUp("nat-c holds app-a's streams", func(a, c syncView) bool { return c.HeldFlows >= n })

	at := p.stopNAT(t, "nat-a", true, false)
	p.waitRoutes(t, "nat-a crashed", 10*time.Second, p.eniC, p.eniC)
	time.Sleep(6 * time.Second)
	var worst time.Duration
	for i, s := range streams {
		s.mu.Lock()
		err, corrupt, read := s.err, s.corrupt, s.read
		s.mu.Unlock()
		w := s.worstSince(at)
		worst = max(worst, w)
		if err != nil || corrupt {
			t.Errorf("stream %d ended after %d bytes: err %v, corrupt %v", i, read, err, corrupt)
		}
	}
	c := p.syncOf(ctx, t, "nat-c")
	t.Logf("crash of nat-a: worst stall %v over %d streams; nat-c's takeover %+v", worst.Round(time.Millisecond), n, c.LastTakeover)
	if c.Injected < n {
		t.Errorf("nat-c injected %d flows at the takeover, want at least %d", c.Injected, n)
	}
	if worst > haCrashBound+time.Second {
		t.Errorf("worst stall %v after the crash, want at most %v", worst, haCrashBound+time.Second)
	}
	for _, s := range streams {
		s.conn.Close()
		<-s.finished
	}
}

// syncView is what a node's status says of its state sync.
type syncView struct {
	Enabled, SentConnected, HeldConnected bool
	Standby                               string
	HeldFlows, Injected                   int
	LastTakeover                          string
}

func (p *haPair) syncOf(ctx context.Context, t *testing.T, name string) syncView {
	t.Helper()
	n := p.nodes[name]
	if n == nil {
		return syncView{}
	}
	st, err := n.client.Status(ctx)
	if err != nil || st.HA == nil || st.HA.Sync == nil {
		return syncView{}
	}
	s := st.HA.Sync
	v := syncView{Enabled: s.Enabled, SentConnected: s.Sent.Connected, HeldConnected: s.Held.Connected, Standby: s.Standby, HeldFlows: s.Held.Flows}
	if lt := s.LastTakeover; lt != nil {
		v.Injected = lt.Injected + lt.Existed
		v.LastTakeover = fmt.Sprintf("%+v", *lt)
	}
	return v
}
