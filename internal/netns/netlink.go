package netns

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ListenerGroups returns, for each netlink socket of the given protocol
// (unix.NETLINK_*) in the namespace that joined any multicast group, its
// group mask as /proc/net/netlink shows it (bit n-1 is group n; the first
// 32 groups). Tests use it to see which event sockets a daemon holds.
func (n *NS) ListenerGroups(protocol int) ([]uint64, error) {
	var masks []uint64
	err := n.Do(func() error {
		// /proc/thread-self: the namespace of this (locked) thread;
		// /proc/self/net would be the main thread's.
		b, err := os.ReadFile("/proc/thread-self/net/netlink")
		if err != nil {
			return err
		}
		proto := strconv.Itoa(protocol)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[1] != proto {
				continue
			}
			g, err := strconv.ParseUint(f[3], 16, 64)
			if err != nil {
				return fmt.Errorf("groups %q of a netlink socket: %w", f[3], err)
			}
			if g != 0 {
				masks = append(masks, g)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netlink sockets in %s: %w", n.Name, err)
	}
	return masks, nil
}
