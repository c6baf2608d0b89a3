package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Validate checks c's values with the same rules Parse applies after
// decoding a file. It returns errors.Join of *FieldError (with key paths,
// no file or line), or nil when c is valid. Use it for configs built or
// changed in code.
func (c *Config) Validate() error {
	d := &decoder{pos: map[string]pos{}, failed: map[string]bool{}}
	validate(c, d)
	return d.err()
}

// checker reports semantic errors, locating them through the decoder's
// record of where each key was written (nothing when validating values
// built in code).
type checker struct{ d *decoder }

// report adds an error at key path unless that key already failed to
// decode. value is the Go value's text; the text as written wins.
func (k checker) report(path, value, format string, args ...any) {
	if k.d.suppressed(path) {
		return
	}
	line, raw, written := k.d.locate(path)
	if written && raw != "" {
		value = raw
	}
	k.d.add(&FieldError{File: k.d.file, Line: line, Key: path, Value: value, Msg: fmt.Sprintf(format, args...)})
}

// written reports whether path was given in the file.
func (k checker) written(path string) bool {
	_, _, ok := k.d.locate(path)
	return ok
}

// ref names another key in a message: `snat.addresses[0] "x" (line 7)`.
func (k checker) ref(path, value string) string {
	s := path
	line, raw, written := k.d.locate(path)
	if written && raw != "" {
		value = raw
	}
	if value != "" {
		s += " " + strconv.Quote(value)
	}
	if line > 0 {
		s += fmt.Sprintf(" (line %d)", line)
	}
	return s
}

func validate(c *Config, d *decoder) {
	k := checker{d}

	if s := c.Interfaces.Outside; s != "" {
		if msg := checkIfname(s); msg != "" {
			k.report("interfaces.outside", s, "%s", msg)
		}
	}

	private := validatePrivateCIDRs(k, c.PrivateCIDRs)
	snat := validateSNAT(k, &c.SNAT)
	validatePortForwards(k, c.PortForwards, private, snat)

	validateHostPorts(k, "host_input.tcp_ports", c.HostInput.TCPPorts)
	validateHostPorts(k, "host_input.udp_ports", c.HostInput.UDPPorts)

	s := &c.Sysctl
	if v := s.ConntrackMax; v != 0 && (v < conntrackMaxLo || v > conntrackMaxHi) {
		k.report("sysctl.conntrack_max", strconv.Itoa(v), "%s", msgConntrackMax)
	}
	checkDuration(k, "sysctl.tcp_established_timeout", s.TCPEstablishedTimeout, 10*time.Second, 5*24*time.Hour, "10s-5d")
	checkDuration(k, "sysctl.udp_timeout", s.UDPTimeout, time.Second, 24*time.Hour, "1s-1d")
	checkDuration(k, "sysctl.udp_stream_timeout", s.UDPStreamTimeout, time.Second, 24*time.Hour, "1s-1d")

	for _, e := range []struct{ key, val string }{
		{"cloud.imds_endpoint", c.Cloud.IMDSEndpoint},
		{"cloud.ec2_endpoint", c.Cloud.EC2Endpoint},
	} {
		if msg := checkEndpoint(e.val); msg != "" {
			k.report(e.key, e.val, "%s", msg)
		}
	}

	if l := c.Metrics.Listen; l != "" {
		if _, port, err := net.SplitHostPort(l); err != nil {
			k.report("metrics.listen", l, "want host:port (e.g. 127.0.0.1:9469): %v", err)
		} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			k.report("metrics.listen", l, "%s", msgPortRange)
		}
	}

	if cw := c.Metrics.CloudWatch; cw.Enabled || k.written("metrics.cloudwatch.namespace") {
		switch ns := cw.Namespace; {
		case ns == "":
			k.report("metrics.cloudwatch.namespace", ns, "must not be empty (default hanat)")
		case len(ns) > 255:
			k.report("metrics.cloudwatch.namespace", ns, "longer than CloudWatch's 255 characters")
		case strings.HasPrefix(ns, "AWS/"):
			k.report("metrics.cloudwatch.namespace", ns, "AWS/ namespaces are reserved for AWS services; use hanat or hanat/…")
		case strings.ContainsFunc(ns, func(r rune) bool { return r < 0x20 || r > 0x7e }):
			k.report("metrics.cloudwatch.namespace", ns, "must be printable ASCII")
		}
	}
	checkDuration(k, "metrics.cloudwatch.interval", c.Metrics.CloudWatch.Interval, time.Second, time.Hour, "1s-1h")
	if msg := checkEndpoint(c.Metrics.CloudWatch.Endpoint); msg != "" {
		k.report("metrics.cloudwatch.endpoint", c.Metrics.CloudWatch.Endpoint, "%s", msg)
	}

	checkEnum(k, "fastpath.mode", c.Fastpath.Mode, FastpathAuto, FastpathXDP, FastpathTC, FastpathXDPGeneric, FastpathNative, FastpathGeneric)

	if msg := checkAbsPath(c.Admin.Socket); msg != "" {
		k.report("admin.socket", c.Admin.Socket, "%s", msg)
	} else if len(c.Admin.Socket) > maxSocketPath {
		k.report("admin.socket", c.Admin.Socket, "longer than %d bytes, the limit for a unix socket path", maxSocketPath)
	}
	if msg := checkGroup(c.Admin.Group); msg != "" {
		k.report("admin.group", c.Admin.Group, "%s", msg)
	}

	validateHA(k, &c.HA)
	validateGWLB(k, &c.GWLB, &c.HA)

	checkEnum(k, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	checkEnum(k, "log.format", c.Log.Format, "text", "json")

	if msg := checkAbsPath(c.StateDir); msg != "" {
		k.report("state_dir", c.StateDir, "%s", msg)
	} else if filepath.Clean(c.StateDir) == "/" {
		k.report("state_dir", c.StateDir, "must not be the root directory")
	}
}

// maxSocketPath is sizeof(sun_path)-1 on Linux.
const maxSocketPath = 107

// reservedIPv4 are ranges whose sources a NAT never translates.
var reservedIPv4 = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\""},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved/broadcast"},
}

// maxPrivateCIDRs bounds private_cidrs (a VPC has at most a few dozen
// CIDRs; the overlap check is quadratic).
const maxPrivateCIDRs = 1024

// validatePrivateCIDRs checks each prefix and that none overlaps another;
// it returns the valid ones.
func validatePrivateCIDRs(k checker, cidrs []netip.Prefix) []netip.Prefix {
	type entry struct {
		i int
		p netip.Prefix
	}
	if len(cidrs) > maxPrivateCIDRs {
		k.report("private_cidrs", "", "too many entries: %d (at most %d)", len(cidrs), maxPrivateCIDRs)
		return nil
	}
	var good []entry
	for i, p := range cidrs {
		path := fmt.Sprintf("private_cidrs[%d]", i)
		msg := checkPrefix(p)
		if msg == "" && p.Bits() == 0 {
			msg = "would NAT every source (an open relay); list the VPC CIDRs, or leave private_cidrs empty to discover them"
		}
		if msg == "" {
			for _, r := range reservedIPv4 {
				if r.prefix.Overlaps(p) {
					msg = fmt.Sprintf("overlaps the %s range %s, which is never NATed", r.what, r.prefix)
					break
				}
			}
		}
		if msg != "" {
			k.report(path, prefixText(p), "%s", msg)
			continue
		}
		clash := false
		for _, e := range good {
			other := fmt.Sprintf("private_cidrs[%d]", e.i)
			switch {
			case e.p == p:
				k.report(path, p.String(), "duplicate of %s", k.ref(other, e.p.String()))
				clash = true
			case e.p.Overlaps(p):
				k.report(path, p.String(), "overlaps %s", k.ref(other, e.p.String()))
				clash = true
			}
		}
		if !clash {
			good = append(good, entry{i, p})
		}
	}
	out := make([]netip.Prefix, len(good))
	for i, e := range good {
		out[i] = e.p
	}
	return out
}

// validateSNAT checks the SNAT section and returns the valid addresses.
func validateSNAT(k checker, s *SNAT) []netip.Addr {
	var good []netip.Addr
	seen := map[netip.Addr]int{}
	for i, a := range s.Addresses {
		path := fmt.Sprintf("snat.addresses[%d]", i)
		msg := checkAddr(a)
		if msg == "" && !a.IsGlobalUnicast() {
			msg = "not a unicast address (0.0.0.0, broadcast, loopback, link-local and multicast cannot be SNAT addresses)"
		}
		if msg != "" {
			k.report(path, addrText(a), "%s", msg)
			continue
		}
		if j, dup := seen[a]; dup {
			k.report(path, a.String(), "duplicate of %s", k.ref(fmt.Sprintf("snat.addresses[%d]", j), a.String()))
			continue
		}
		seen[a] = i
		good = append(good, a)
	}
	if r := s.Ports; r.Min == 0 {
		k.report("snat.ports", r.String(), "lowest port must be at least 1")
	} else if r.Min > r.Max {
		k.report("snat.ports", r.String(), "min %d is greater than max %d", r.Min, r.Max)
	}
	return good
}

func validatePortForwards(k checker, pfs []PortForward, private []netip.Prefix, snat []netip.Addr) {
	type listener struct {
		proto string
		port  uint16
	}
	byListener := map[listener]int{}
	byName := map[string]int{}
	for i, pf := range pfs {
		path := fmt.Sprintf("port_forwards[%d]", i)
		if k.d.suppressed(path) {
			continue
		}

		if pf.Name != "" {
			if msg := checkName(pf.Name); msg != "" {
				k.report(path+".name", pf.Name, "%s", msg)
			} else if j, dup := byName[pf.Name]; dup {
				k.report(path+".name", pf.Name, "duplicate name, also used by %s", k.ref(fmt.Sprintf("port_forwards[%d]", j), ""))
			} else {
				byName[pf.Name] = i
			}
		}

		protoOK := pf.Protocol == ProtocolTCP || pf.Protocol == ProtocolUDP
		switch {
		case protoOK:
		case pf.Protocol == "" && !k.written(path+".protocol"):
			k.report(path+".protocol", "", "%s (tcp or udp)", msgRequired)
		default:
			k.report(path+".protocol", pf.Protocol, "must be %q or %q", ProtocolTCP, ProtocolUDP)
		}

		switch {
		case pf.Port != 0:
		case k.written(path + ".port"):
			k.report(path+".port", "0", "%s", msgPortRange)
		default:
			k.report(path+".port", "", "%s (listen port 1-65535)", msgRequired)
		}

		validateTo(k, path+".to", pf, private, snat)

		for j, p := range pf.Sources {
			if msg := checkPrefix(p); msg != "" {
				k.report(fmt.Sprintf("%s.sources[%d]", path, j), prefixText(p), "%s", msg)
			}
		}

		if protoOK && pf.Port != 0 {
			l := listener{pf.Protocol, pf.Port}
			if j, dup := byListener[l]; dup {
				k.report(path+".port", strconv.Itoa(int(pf.Port)), "duplicate port forward: %s already forwards %s port %d",
					k.ref(fmt.Sprintf("port_forwards[%d]", j), ""), pf.Protocol, pf.Port)
			} else {
				byListener[l] = i
			}
		}
	}
}

func validateTo(k checker, path string, pf PortForward, private []netip.Prefix, snat []netip.Addr) {
	to := pf.To
	if !to.IsValid() {
		if k.written(path) {
			k.report(path, "", "invalid address")
		} else {
			k.report(path, "", "%s (private host:port)", msgRequired)
		}
		return
	}
	a := to.Addr()
	msg := checkAddr(a)
	if msg == "" && !a.IsGlobalUnicast() {
		msg = "not a unicast host address (0.0.0.0, broadcast, loopback, link-local and multicast cannot be forwarded to)"
	}
	if msg != "" {
		k.report(path, to.String(), "%s", msg)
		return
	}
	if to.Port() == 0 {
		if pf.Port != 0 {
			k.report(path, to.String(), "%s", msgPortRange)
		}
		return
	}
	if len(private) > 0 && !containsAddr(private, a) {
		k.report(path, to.String(), "%s is not inside private_cidrs: forwarding to a host the NAT does not serve", a)
		return
	}
	for _, s := range snat {
		if s == a {
			k.report(path, to.String(), "%s is a SNAT address of this NAT; forward to a private host", a)
			return
		}
	}
}

func containsAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// checkPrefix accepts canonical IPv4 prefixes.
func checkPrefix(p netip.Prefix) string {
	if !p.IsValid() {
		return "invalid CIDR prefix"
	}
	if msg := checkAddr(p.Addr()); msg != "" {
		return strings.Replace(msg, "address", "prefix", 1)
	}
	if m := p.Masked(); m != p {
		return fmt.Sprintf("host bits set, did you mean %s", m)
	}
	return ""
}

// checkAddr accepts IPv4 addresses (IPv6 comes with NAT64, later).
func checkAddr(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "invalid IP address"
	case a.Is4In6():
		return fmt.Sprintf("IPv4-mapped IPv6 address; write it as plain IPv4 %s", a.Unmap())
	case !a.Is4():
		return "IPv6 address; only IPv4 is supported for now"
	}
	return ""
}

func prefixText(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func checkDuration(k checker, path string, d Duration, lo, hi time.Duration, rng string) {
	switch {
	case d.Duration%time.Second != 0:
		k.report(path, d.String(), "must be a whole number of seconds")
	case d.Duration < lo || d.Duration > hi:
		k.report(path, d.String(), "out of range %s", rng)
	}
}

func checkEnum(k checker, path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	k.report(path, v, "must be one of %s", strings.Join(allowed, ", "))
}

// checkIfname applies the kernel's dev_valid_name rules.
func checkIfname(s string) string {
	switch {
	case len(s) > 15:
		return "interface name longer than 15 bytes"
	case s == "." || s == "..":
		return "not a valid interface name"
	}
	for _, r := range s {
		switch r {
		case '/', ':', ' ', '\t', '\n', '\v', '\f', '\r', 0:
			return fmt.Sprintf("interface name cannot contain %q", r)
		}
	}
	return ""
}

// checkName accepts port forward labels: [a-z0-9-_.], at most 63.
func checkName(s string) string {
	if len(s) > 63 {
		return "name longer than 63 characters"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "name may only contain a-z, 0-9, '-', '_' and '.'"
		}
	}
	return ""
}

// checkGroup accepts a group name or numeric id.
func checkGroup(s string) string {
	switch {
	case s == "":
		return "must not be empty: name the group that may use the admin socket besides root"
	case len(s) > 32:
		return "group name longer than 32 characters"
	case strings.ContainsAny(s, ":/,\x00") || strings.IndexFunc(s, isSpaceOrControl) >= 0:
		return "not a valid group name"
	}
	return ""
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

func checkAbsPath(s string) string {
	switch {
	case s == "":
		return "must not be empty"
	case strings.ContainsRune(s, 0):
		return "path contains a NUL byte"
	case !filepath.IsAbs(s):
		return "must be an absolute path"
	}
	return ""
}

// validateHostPorts rejects port 0 and duplicates in a host_input list.
func validateHostPorts(k checker, path string, ports []uint16) {
	seen := map[uint16]bool{}
	for i, p := range ports {
		ip := path + "[" + strconv.Itoa(i) + "]"
		switch {
		case p == 0:
			k.report(ip, "0", "%s", msgPortRange)
		case seen[p]:
			k.report(ip, strconv.Itoa(int(p)), "duplicate port")
		}
		seen[p] = true
	}
}

// checkEndpoint accepts "" (the default) or an absolute http(s) URL.
func checkEndpoint(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "not a URL: " + err.Error()
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an http:// or https:// URL"
	case u.Host == "":
		return "URL has no host"
	}
	return ""
}
