// Package ha is hanat's HA pair: which node's ENI each private route
// table's 0.0.0.0/0 points at.
//
// Each node has home route tables (its AZ's) and backs up its peer's. The
// pair exchanges a UDP heartbeat (port 7946 by default, every 200 ms,
// HMAC-SHA256 with a shared key; see Message for the wire format) that
// carries node id, ENI, epoch and sequence number, the acknowledged
// sequence of the peer, a timestamp, health and maintenance, and the
// tables the node calls home, owns, wants and offers. Replayed, stale,
// unauthenticated and malformed datagrams are dropped and counted.
//
// Engine is the ownership state machine. It is pure (time is an argument,
// no I/O) and decides which tables this node claims:
//
//   - a node takes its peer's tables once, when the peer dies (no
//     heartbeat for dead_after intervals) or reports itself unhealthy or
//     in maintenance;
//   - it never takes a table back by itself: a table it held that now
//     points elsewhere was taken (by the peer or an operator) and is
//     released, not rewritten — so a partition of the heartbeat link
//     changes each table at most once;
//   - home tables return by handshake: after a hold-down (both nodes up
//     and healthy) the home node lists them as wanted, the peer stops
//     claiming them, and once the peer's heartbeat acknowledges the want
//     and no longer owns them the home node points them at itself
//     (preempt); or by an operator (failover, takeover);
//   - before giving a table away a node stops claiming it (release, then
//     offer); an unhealthy node or one in maintenance hands its tables
//     to a healthy peer;
//   - a table pointing at a stopped instance (blackhole) while the peer
//     is dead is taken; a single instance (no peer) owns its home tables.
//
// An evaluation runs in named steps (decide.go): peerEdges (the peer died
// or turned unhealthy), expire (offers and takeovers that ran out), then
// decideHeld for each table the node claims and decideFree for the
// others. Every claim and release carries a typed Reason; its String is
// what the logs and the status show. Engine.Version moves whenever the
// claims, offers, wants, ENI, health or maintenance change, and the
// Manager then writes and tells the peer at once. Counters are the node's
// one set of HA counters; Status is the typed snapshot the daemon turns
// into its admin status and its metrics.
//
// Manager runs the engine: heartbeats (the peer is declared dead by a
// timer at its last heartbeat + DeadAfter, not on a tick), health checks,
// and a level-triggered reconcile that compares the claims with
// DescribeRouteTables (through the Cloud interface; hanatd implements it
// over package cloud) and writes only the claimed tables that do not point
// here yet. Describes (every Resync) and writes run apart: a claim is
// written at once, concurrently for several tables (bounded), with the
// call the last observation suggests (ReplaceRoute, CreateRoute, or a
// describe first when the table was never seen), and a describe follows
// to verify. Describe answers that may predate one of the node's own
// writes are ignored. Elastic IPs can follow their route
// tables (EIPGroup). ha never imports the AWS SDK, nftables or BPF.
package ha
