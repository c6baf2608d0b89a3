// Package datapath programs the NAT's kernel datapath: the nftables slow
// path (one table, inet hanat, owned by hanat and nothing else), the sysctls
// a NAT needs, and discovery of the outside link. It knows nothing of AWS or
// of config files: callers pass plain Go values (CIDRs, SNAT addresses,
// interface names) and get plain values back.
//
// Everything here is reconciled from whole state: BuildTable turns a NAT
// description into the desired table as data, Slowpath.Apply replaces the
// live table atomically only when it differs, and applying the same NAT again
// changes nothing.
//
// Order at start-up: Slowpath.Apply first (its ct expressions load
// nf_conntrack, whose sysctls do not exist before), then Sysctls.Apply with
// DesiredSysctls. Both survive the daemon; Slowpath.Remove and
// Sysctls.Restore undo them.
package datapath
