package vpcsim

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// UDPFlow is one private host's UDP flow to the internet's echo server.
type UDPFlow struct {
	Conn net.Conn
	Src  string // the private addr:port, as hanatctl flows names it
}

// OpenUDPFlows opens n UDP flows to the internet's echo server, from
// hosts in turn (the caller closes them, also after an error).
func (l *Lab) OpenUDPFlows(n int, hosts ...string) ([]UDPFlow, error) {
	echo := l.Internet().UDPEchoAddr.String()
	out := make([]UDPFlow, 0, n)
	for i := range n {
		host := hosts[i%len(hosts)]
		in := l.Instance(host)
		if in == nil {
			return out, fmt.Errorf("vpcsim UDP flow %d: unknown instance %q", i, host)
		}
		var c net.Conn
		if err := in.NS.Do(func() (err error) { c, err = net.Dial("udp4", echo); return err }); err != nil {
			return out, fmt.Errorf("vpcsim UDP flow %d from %s to %s: %w", i, host, echo, err)
		}
		out = append(out, UDPFlow{Conn: c, Src: c.LocalAddr().String()})
	}
	return out, nil
}

// AskUDP sends one datagram on each flow (up to 3 tries, wait in all,
// all flows at once) and says which were echoed.
func AskUDP(flows []UDPFlow, wait time.Duration) []bool {
	out := make([]bool, len(flows))
	var wg sync.WaitGroup
	for i, fl := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := "flow " + fl.Src
			buf := make([]byte, 256)
			for range 3 {
				if _, err := fl.Conn.Write([]byte(msg)); err != nil {
					return
				}
				_ = fl.Conn.SetReadDeadline(time.Now().Add(wait / 3))
				if n, err := fl.Conn.Read(buf); err == nil && string(buf[:n]) == msg {
					out[i] = true
					return
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// Answered counts the true ones of AskUDP's answer.
func Answered(ok []bool) int {
	n := 0
	for _, b := range ok {
		if b {
			n++
		}
	}
	return n
}
