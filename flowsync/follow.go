package flowsync

import (
	"context"
	"errors"
	"fmt"

	"github.com/hanat/hanat/conntrack"
)

// Follow feeds the sender from the conntrack events of feed until ctx is
// done or the feed stops: a new or updated flow's state (Upsert), a
// destroyed flow's end (Delete), and a snapshot after the feed lost
// events (Resync). It subscribes to UPDATE events, which the kernel's
// event shaping keeps to what the offload engine already asks for: a
// connection storm's short flows cost a DESTROY each.
//
// establishedMark is the conntrack mark bit the NAT sets on an
// established flow worth keeping (the fast path's offload mark; 0: none).
// The event announcing it carries no TCP state, so a marked TCP flow
// without one counts as established.
func (s *Sender) Follow(ctx context.Context, feed *conntrack.EventFeed, establishedMark uint32) error {
	unsubscribe, err := feed.Subscribe(true, func(ev conntrack.Event) { s.observe(ev, establishedMark) }, s.Resync)
	if err != nil {
		return fmt.Errorf("flowsync: follow conntrack events: %w", err)
	}
	defer unsubscribe()
	if err := feed.Wait(ctx); err != nil && !errors.Is(err, conntrack.ErrFeedStopped) {
		return fmt.Errorf("flowsync: follow conntrack events: %w", err)
	}
	return nil
}

// observe hands one event to the sender.
func (s *Sender) observe(ev conntrack.Event, establishedMark uint32) {
	f := ev.Flow
	if ev.Kind == conntrack.EventDestroy {
		s.Delete(f.Original)
		return
	}
	if !ev.Plain {
		s.Delete(f.Original) // not a flow a peer can take over (helper, zone, IPv6)
		return
	}
	if f.Original.Proto == protoTCP && f.TCPState == "" && establishedMark != 0 && f.Mark&establishedMark != 0 {
		f.TCPState = "ESTABLISHED"
	}
	s.Upsert(f)
}
