package netns

import (
	"context"
	"net"
)

// DialContext connects to addr from inside the namespace (the socket is
// made there and stays there), for an http.Transport's DialContext.
func (n *NS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) {
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}
