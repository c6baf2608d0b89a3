// Package flowsync is the pair's conntrack state sync: each node streams
// the flows it NATs to its peer, which holds them in memory and, when it
// takes the peer's traffic over, injects them into its own kernel (through
// conntrack.Injector) with the NAT address rewritten to the address that
// now carries the peer's EIP, so that established connections survive
// the failover.
//
// A Sender dials the peer's Receiver over TCP on the pair's private IPs.
// Each session starts with a handshake that derives fresh AES-256-GCM keys
// per direction from the pair's shared key (seal.go); every message is
// authenticated, numbered and replay-checked. The sender first sends a
// snapshot of its table (a dump through Source), then the changes it is
// handed (Upsert, Delete), coalesced per flow. The receiver acknowledges
// what it applied (the sender's lag) and asks for a snapshot when
// messages were lost; a reconnect always starts with one. Only flows that
// can matter are synced (Syncable). Nothing blocks the caller: a full
// queue drops the change and forces a snapshot.
//
// Sender, Receiver and Takeover touch no kernel: they are handed a
// Source (conntrack.Table) and, at a takeover, an injector
// (conntrack.Injector): Receiver.InjectTakeover rewrites each held flow
// (Takeover's rules and refusals) as the injector's encoder takes it, so
// that the rewrite runs while the kernel creates the entries before;
// Takeover.Rewrite does the same for a list of flows (Receiver.Held).
// Pair is one node's whole sync as the daemon runs it: it opens the
// conntrack sockets (a table to dump, an injector) through package
// conntrack, follows the daemon's event feed, gates the failback on the
// peer's first snapshot, injects the peer's flows at a takeover
// (TakeoverAddrs, InjectTakeover) and names the peer zone's subnets that
// leave with the standby address.
package flowsync
