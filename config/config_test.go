package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fieldErrors flattens Parse's errors.Join into its *FieldErrors.
func fieldErrors(t testing.TB, err error) []*FieldError {
	t.Helper()
	var out []*FieldError
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %v (%T) is not an errors.Join", err, err)
	}
	for _, e := range j.Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("error %v (%T) is not a *FieldError", e, e)
		}
		out = append(out, fe)
	}
	return out
}

// badCase is one invalid file: the error expected among those reported.
type badCase struct {
	name string
	yaml string
	line int    // expected line
	key  string // expected key path
	msg  string // substring of Msg
}

var badCases = []badCase{
	// YAML syntax and shape.
	{"tab indentation", "snat:\n\tports: 1-2\n", 2, "", "use spaces"},
	{"tab after key", "log:\n  level: info\n\tformat: text\n", 2, "", "invalid YAML"},
	{"garbage braces", "{{{", 1, "", "invalid YAML"},
	{"garbage mapping values", "log: level: info\n", 1, "", "invalid YAML: mapping values are not allowed"},
	{"garbage parser error line", "log: {}\n- x\n", 2, "", "invalid YAML: did not find expected key"},
	{"unterminated quote", "state_dir: '/var\n", 1, "", "invalid YAML"},
	{"binary garbage", "\x00\x01\x02", 1, "", "invalid YAML"},
	{"root is a list", "- snat\n", 1, "", "expected a mapping (key: value), got a list"},
	{"root is a string", "hello\n", 1, "", "expected a mapping (key: value), got a string"},
	{"list where map expected", "snat:\n  - ports\n", 2, "snat", "expected a mapping (key: value), got a list"},
	{"list where map expected in forward", "port_forwards:\n  - [tcp, 22]\n", 2, "port_forwards[0]", "expected a mapping"},
	{"map where list expected", "private_cidrs:\n  a: 10.0.0.0/16\n", 2, "private_cidrs", "expected a list, got a mapping"},
	{"scalar where list expected", "private_cidrs: 10.0.0.0/16\n", 1, "private_cidrs", "expected a list, got a string"},
	{"duplicate key", "log:\n  level: info\n  level: debug\n", 3, "log.level", "duplicate key, first defined at line 2"},
	{"duplicate section", "log: {}\nsnat: {}\nlog: {}\n", 3, "log", "duplicate key, first defined at line 1"},
	{"two documents", "log: {}\n---\nlog: {}\n", 2, "", "more than one YAML document"},
	{"merge key", "a: &a {level: info}\nlog:\n  <<: *a\n", 1, "a", "unknown key"},
	{"merge key in section", "log:\n  <<: {level: info}\n", 2, "log.<<", "merge keys (<<) are not supported"},
	{"custom tag", "state_dir: !path /var/lib/hanat\n", 1, "state_dir", "unsupported YAML tag !path"},
	{"unknown anchor", "log: {}\nstate_dir: *nope\n", 2, "", "unknown anchor 'nope'"},
	{"complex key", "? [a]\n: b\n", 1, "", "keys must be plain strings"},

	// Unknown keys.
	{"unknown top key", "snta: {}\n", 1, "snta", `unknown key (did you mean "snat"?)`},
	{"unknown key lists valid ones", "zzzzzzzzz: 1\n", 1, "zzzzzzzzz", "valid keys: admin, cloud, fastpath"},
	{"unknown nested key", "snat:\n  adresses: []\n", 2, "snat.adresses", `did you mean "addresses"?`},
	{"unknown forward key", "port_forwards:\n  - protocol: tcp\n    port: 22\n    to: 10.0.11.5\n    source: [10.0.0.0/8]\n", 5, "port_forwards[0].source", `did you mean "sources"?`},
	{"key in wrong case", "Log: {}\n", 1, "Log", `did you mean "log"?`},

	// interfaces.
	{"ifname too long", "interfaces:\n  outside: abcdefghijklmnop\n", 2, "interfaces.outside", "longer than 15"},
	{"ifname slash", "interfaces: {outside: eth/0}\n", 1, "interfaces.outside", "cannot contain '/'"},
	{"ifname space", "interfaces: {outside: 'eth 0'}\n", 1, "interfaces.outside", "cannot contain ' '"},
	{"ifname dot", "interfaces: {outside: .}\n", 1, "interfaces.outside", "not a valid interface name"},
	{"ifname dotdot", "interfaces: {outside: ..}\n", 1, "interfaces.outside", "not a valid interface name"},
	{"ifname bool", "interfaces: {outside: true}\n", 1, "interfaces.outside", "expected a string, got a boolean"},
	{"ifname list", "interfaces: {outside: [eth0]}\n", 1, "interfaces.outside", "expected a string, got a list"},

	// private_cidrs.
	{"bad cidr length", "private_cidrs:\n  - 10.0.0.0/33\n", 2, "private_cidrs[0]", "invalid CIDR prefix"},
	{"bad cidr address", "private_cidrs: [10.0.0.256/16]\n", 1, "private_cidrs[0]", "invalid CIDR prefix"},
	{"cidr not a prefix", "private_cidrs: [banana]\n", 1, "private_cidrs[0]", "invalid CIDR prefix"},
	{"cidr without length", "private_cidrs: [10.0.11.7]\n", 1, "private_cidrs[0]", "did you mean 10.0.11.7/32?"},
	{"cidr host bits", "private_cidrs:\n  - 10.0.0.0/16\n  - 10.0.11.7/24\n", 3, "private_cidrs[1]", "host bits set, did you mean 10.0.11.0/24"},
	{"cidr ipv6", "private_cidrs: [2001:db8::/32]\n", 1, "private_cidrs[0]", "only IPv4 is supported"},
	{"cidr ipv4-mapped", "private_cidrs: ['::ffff:10.0.0.0/104']\n", 1, "private_cidrs[0]", "IPv4-mapped"},
	{"cidr overlap", "private_cidrs:\n  - 10.0.0.0/16\n  - 10.0.11.0/24\n", 3, "private_cidrs[1]", `overlaps private_cidrs[0] "10.0.0.0/16" (line 2)`},
	{"cidr duplicate", "private_cidrs:\n  - 10.0.0.0/16\n  - 172.16.0.0/12\n  - 10.0.0.0/16\n", 4, "private_cidrs[2]", `duplicate of private_cidrs[0] "10.0.0.0/16" (line 2)`},
	{"cidr everything", "private_cidrs: [0.0.0.0/0]\n", 1, "private_cidrs[0]", "open relay"},
	{"cidr loopback", "private_cidrs: [127.0.0.0/8]\n", 1, "private_cidrs[0]", "loopback"},
	{"cidr multicast", "private_cidrs: [224.0.0.0/8]\n", 1, "private_cidrs[0]", "multicast"},
	{"cidr integer", "private_cidrs: [10]\n", 1, "private_cidrs[0]", "invalid CIDR prefix"},
	{"cidr nested list", "private_cidrs: [[10.0.0.0/8]]\n", 1, "private_cidrs[0]", "expected a CIDR prefix, got a list"},

	// snat.
	{"snat bad address", "snat:\n  addresses: [203.0.113.300]\n", 2, "snat.addresses[0]", "invalid IP address"},
	{"snat address with port", "snat: {addresses: ['203.0.113.5:80']}\n", 1, "snat.addresses[0]", "invalid IP address"},
	{"snat ipv6", "snat:\n  addresses:\n    - 2001:db8::1\n", 3, "snat.addresses[0]", "only IPv4 is supported"},
	{"snat ipv4-mapped", "snat: {addresses: ['::ffff:203.0.113.5']}\n", 1, "snat.addresses[0]", "write it as plain IPv4 203.0.113.5"},
	{"snat unspecified", "snat: {addresses: [0.0.0.0]}\n", 1, "snat.addresses[0]", "not a unicast address"},
	{"snat broadcast", "snat: {addresses: [255.255.255.255]}\n", 1, "snat.addresses[0]", "not a unicast address"},
	{"snat multicast", "snat: {addresses: [224.0.0.1]}\n", 1, "snat.addresses[0]", "not a unicast address"},
	{"snat loopback", "snat: {addresses: [127.0.0.1]}\n", 1, "snat.addresses[0]", "not a unicast address"},
	{"snat duplicate", "snat:\n  addresses:\n    - 10.0.1.10\n    - 10.0.1.11\n    - 10.0.1.10\n", 5, "snat.addresses[2]", `duplicate of snat.addresses[0] "10.0.1.10" (line 3)`},
	{"snat ports min 0", "snat: {ports: 0-65535}\n", 1, "snat.ports", "at least 1"},
	{"snat ports reversed", "snat:\n  ports: 2000-1000\n", 2, "snat.ports", "min 2000 is greater than max 1000"},
	{"snat ports too high", "snat: {ports: 1024-65536}\n", 1, "snat.ports", msgPortRange},
	{"snat ports single", "snat: {ports: 1024}\n", 1, "snat.ports", "expected a port range min-max"},
	{"snat ports negative", "snat: {ports: -1-100}\n", 1, "snat.ports", "not a decimal number"},
	{"snat ports words", "snat: {ports: low-high}\n", 1, "snat.ports", "not a decimal number"},

	// ha.sync_port.
	{"sync port is the heartbeat port", "ha:\n  sync_port: 7946\n", 2, "ha.sync_port", "the same as ha.port"},
	{"sync port 0", "ha:\n  sync_port: 0\n", 2, "ha.sync_port", msgPortRange},

	// port_forwards.
	{"to port out of range", "private_cidrs: [10.0.0.0/16]\nport_forwards:\n  - {protocol: tcp, port: 22, to: 10.0.11.5:22}\n  - protocol: tcp\n    port: 80\n    to: 10.0.11.5:70000\n", 6, "port_forwards[1].to", msgPortRange},
	{"port 0", "port_forwards:\n  - {protocol: tcp, port: 0, to: 10.0.11.5:22}\n", 2, "port_forwards[0].port", msgPortRange},
	{"port 65536", "port_forwards:\n  - protocol: tcp\n    port: 65536\n    to: 10.0.11.5:22\n", 3, "port_forwards[0].port", msgPortRange},
	{"port negative", "port_forwards:\n  - {protocol: tcp, port: -22, to: 10.0.11.5:22}\n", 2, "port_forwards[0].port", msgPortRange},
	{"port huge", "port_forwards:\n  - {protocol: tcp, port: 99999999999999999999999, to: 10.0.11.5:22}\n", 2, "port_forwards[0].port", msgPortRange},
	{"port string", "port_forwards:\n  - {protocol: tcp, port: '22', to: 10.0.11.5:22}\n", 2, "port_forwards[0].port", "expected an integer, got a string"},
	{"port float", "port_forwards:\n  - {protocol: tcp, port: 22.5, to: 10.0.11.5:22}\n", 2, "port_forwards[0].port", "expected an integer, got a number"},
	{"port leading zero", "port_forwards:\n  - {protocol: tcp, port: 022, to: 10.0.11.5:22}\n", 2, "port_forwards[0].port", "leading zero"},
	{"port hex", "port_forwards:\n  - {protocol: tcp, port: 0x16, to: 10.0.11.5:22}\n", 2, "port_forwards[0].port", "expected a decimal integer"},
	{"port missing", "port_forwards:\n  - protocol: tcp\n    to: 10.0.11.5:22\n", 2, "port_forwards[0].port", msgRequired},
	{"protocol with space", "port_forwards:\n  - {protocol: 'tcp ', port: 22, to: 10.0.11.5:22}\n", 2, "port_forwards[0].protocol", `must be "tcp" or "udp"`},
	{"protocol icmp", "port_forwards:\n  - protocol: icmp\n    port: 22\n    to: 10.0.11.5:22\n", 2, "port_forwards[0].protocol", `must be "tcp" or "udp"`},
	{"protocol upper case", "port_forwards:\n  - {protocol: TCP, port: 22, to: 10.0.11.5:22}\n", 2, "port_forwards[0].protocol", `must be "tcp" or "udp"`},
	{"protocol empty", "port_forwards:\n  - {protocol: '', port: 22, to: 10.0.11.5:22}\n", 2, "port_forwards[0].protocol", `must be "tcp" or "udp"`},
	{"protocol missing", "port_forwards:\n  - port: 22\n    to: 10.0.11.5:22\n", 2, "port_forwards[0].protocol", msgRequired},
	{"port null", "port_forwards:\n  - protocol: tcp\n    port: ~\n    to: 10.0.11.5:22\n", 3, "port_forwards[0].port", msgRequired},
	{"protocol null", "port_forwards:\n  - protocol:\n    port: 22\n    to: 10.0.11.5:22\n", 2, "port_forwards[0].protocol", msgRequired},
	{"cidr null", "private_cidrs:\n  - 10.0.0.0/16\n  -\n  - 10.0.0.0/8\n", 3, "private_cidrs[1]", "empty list entry"},
	{"index kept after null", "private_cidrs:\n  - 10.0.0.0/16\n  -\n  - 10.0.0.0/8\n", 4, "private_cidrs[2]", `overlaps private_cidrs[0] "10.0.0.0/16" (line 2)`},
	{"to missing", "port_forwards:\n  - protocol: tcp\n    port: 22\n", 2, "port_forwards[0].to", msgRequired},
	{"to bad address", "port_forwards:\n  - {protocol: tcp, port: 22, to: '10.0.11:22'}\n", 2, "port_forwards[0].to", "invalid address"},
	{"to empty port", "port_forwards:\n  - {protocol: tcp, port: 22, to: '10.0.11.5:'}\n", 2, "port_forwards[0].to", "invalid port: empty"},
	{"to named port", "port_forwards:\n  - {protocol: tcp, port: 22, to: '10.0.11.5:ssh'}\n", 2, "port_forwards[0].to", "not a decimal number"},
	{"to port 0", "port_forwards:\n  - {protocol: tcp, port: 22, to: '10.0.11.5:0'}\n", 2, "port_forwards[0].to", msgPortRange},
	{"to ipv6", "port_forwards:\n  - {protocol: tcp, port: 22, to: '[2001:db8::5]:22'}\n", 2, "port_forwards[0].to", "only IPv4 is supported"},
	{"to bare ipv6", "port_forwards:\n  - {protocol: tcp, port: 22, to: '2001:db8::5'}\n", 2, "port_forwards[0].to", "only IPv4 is supported"},
	{"to loopback", "port_forwards:\n  - {protocol: tcp, port: 22, to: 127.0.0.1}\n", 2, "port_forwards[0].to", "not a unicast host address"},
	{"to integer", "port_forwards:\n  - {protocol: tcp, port: 22, to: 22}\n", 2, "port_forwards[0].to", "invalid address"},
	{"to outside private cidrs", "private_cidrs: [10.0.0.0/16]\nport_forwards:\n  - protocol: udp\n    port: 53\n    to: 192.168.1.5\n", 5, "port_forwards[0].to", "not inside private_cidrs: forwarding to a host the NAT does not serve"},
	{"to a snat address", "snat: {addresses: [10.0.1.10]}\nport_forwards:\n  - {protocol: tcp, port: 22, to: 10.0.1.10}\n", 3, "port_forwards[0].to", "is a SNAT address"},
	{"duplicate forward", "port_forwards:\n  - protocol: tcp\n    port: 443\n    to: 10.0.11.5\n  - protocol: tcp\n    port: 443\n    to: 10.0.12.5\n    sources: [203.0.113.0/24]\n", 6, "port_forwards[1].port", "port_forwards[0] (line 2) already forwards tcp port 443"},
	{"duplicate name", "port_forwards:\n  - {name: web, protocol: tcp, port: 80, to: 10.0.11.5}\n  - {name: web, protocol: tcp, port: 443, to: 10.0.11.5}\n", 3, "port_forwards[1].name", "also used by port_forwards[0] (line 2)"},
	{"bad name", "port_forwards:\n  - {name: SSH!, protocol: tcp, port: 22, to: 10.0.11.5}\n", 2, "port_forwards[0].name", "may only contain"},
	{"long name", "port_forwards:\n  - {name: " + strings.Repeat("a", 64) + ", protocol: tcp, port: 22, to: 10.0.11.5}\n", 2, "port_forwards[0].name", "longer than 63"},
	{"empty forward", "port_forwards:\n  -\n", 2, "port_forwards[0]", "empty list entry"},
	{"source host bits", "port_forwards:\n  - protocol: tcp\n    port: 22\n    to: 10.0.11.5\n    sources:\n      - 203.0.113.7/24\n", 6, "port_forwards[0].sources[0]", "host bits set, did you mean 203.0.113.0/24"},
	{"source bad", "port_forwards:\n  - {protocol: tcp, port: 22, to: 10.0.11.5, sources: [203.0.113.0/40]}\n", 2, "port_forwards[0].sources[0]", "invalid CIDR prefix"},
	{"source ipv6", "port_forwards:\n  - {protocol: tcp, port: 22, to: 10.0.11.5, sources: ['2001:db8::/32']}\n", 2, "port_forwards[0].sources[0]", "only IPv4 is supported"},
	{"forwards not a list", "port_forwards: {protocol: tcp}\n", 1, "port_forwards", "expected a list, got a mapping"},

	// sysctl.
	{"conntrack_max small", "sysctl:\n  conntrack_max: 100\n", 2, "sysctl.conntrack_max", "1024-67108864"},
	{"conntrack_max negative", "sysctl: {conntrack_max: -1}\n", 1, "sysctl.conntrack_max", "1024-67108864"},
	{"conntrack_max huge", "sysctl: {conntrack_max: 1000000000}\n", 1, "sysctl.conntrack_max", "1024-67108864"},
	{"conntrack_max string", "sysctl: {conntrack_max: lots}\n", 1, "sysctl.conntrack_max", "expected an integer, got a string"},
	{"manage yes", "sysctl:\n  manage: yes\n", 2, "sysctl.manage", "expected true or false, got a string"},
	{"manage 1", "sysctl: {manage: 1}\n", 1, "sysctl.manage", "expected true or false, got an integer"},
	{"tcp timeout short", "sysctl:\n  tcp_established_timeout: 5s\n", 2, "sysctl.tcp_established_timeout", "out of range 10s-5d"},
	{"tcp timeout long", "sysctl: {tcp_established_timeout: 6d}\n", 1, "sysctl.tcp_established_timeout", "out of range 10s-5d"},
	{"tcp timeout bad unit", "sysctl: {tcp_established_timeout: 10x}\n", 1, "sysctl.tcp_established_timeout", "invalid duration"},
	{"tcp timeout negative", "sysctl: {tcp_established_timeout: -350s}\n", 1, "sysctl.tcp_established_timeout", "out of range 10s-5d"},
	{"tcp timeout negative int", "sysctl: {tcp_established_timeout: -350}\n", 1, "sysctl.tcp_established_timeout", "out of range 10s-5d"},
	{"tcp timeout fraction", "sysctl: {tcp_established_timeout: 1500ms}\n", 1, "sysctl.tcp_established_timeout", "whole number of seconds"},
	{"tcp timeout float", "sysctl: {tcp_established_timeout: 3.5}\n", 1, "sysctl.tcp_established_timeout", "expected a duration"},
	{"tcp timeout overflow", "sysctl: {tcp_established_timeout: 99999999999999999999}\n", 1, "sysctl.tcp_established_timeout", "too large"},
	{"udp timeout zero", "sysctl: {udp_timeout: 0}\n", 1, "sysctl.udp_timeout", "out of range 1s-1d"},
	{"udp stream timeout long", "sysctl:\n  udp_stream_timeout: 2d\n", 2, "sysctl.udp_stream_timeout", "out of range 1s-1d"},
	{"udp timeout empty", "sysctl: {udp_timeout: ''}\n", 1, "sysctl.udp_timeout", "invalid duration"},

	// fastpath, admin, log, state_dir.
	{"fastpath enabled string", "fastpath: {enabled: 'true'}\n", 1, "fastpath.enabled", "expected true or false, got a string"},
	{"fastpath mode", "fastpath:\n  mode: turbo\n", 2, "fastpath.mode", "must be one of auto, xdp, tc, xdp-generic, native, generic"},
	{"fastpath offload negative", "fastpath:\n  offload_after_packets: -1\n", 2, "fastpath.offload_after_packets", "must be 0 (offload at once) to 1000000 packets"},
	{"fastpath offload huge", "fastpath:\n  offload_after_packets: 10000000\n", 2, "fastpath.offload_after_packets", "must be 0 (offload at once) to 1000000 packets"},
	{"admin socket relative", "admin: {socket: run/admin.sock}\n", 1, "admin.socket", "absolute path"},
	{"admin socket empty", "admin: {socket: ''}\n", 1, "admin.socket", "must not be empty"},
	{"admin socket long", "admin: {socket: /" + strings.Repeat("s", 107) + "}\n", 1, "admin.socket", "longer than 107 bytes"},
	{"admin group empty", "admin: {group: ''}\n", 1, "admin.group", "must not be empty"},
	{"admin group bad", "admin: {group: 'a b'}\n", 1, "admin.group", "not a valid group name"},
	{"log level", "log:\n  level: verbose\n", 2, "log.level", "must be one of debug, info, warn, error"},
	{"log format", "log: {format: xml}\n", 1, "log.format", "must be one of text, json"},
	{"state_dir relative", "state_dir: var/lib/hanat\n", 1, "state_dir", "absolute path"},
	{"state_dir root", "state_dir: /\n", 1, "state_dir", "root directory"},
	{"state_dir nul", "state_dir: \"/var/\\0lib\"\n", 1, "state_dir", "NUL"},
}

func TestParseBad(t *testing.T) {
	for _, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("hanat.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded, want error %d %s %q; got %+v", tc.line, tc.key, tc.msg, c)
			}
			if c != nil {
				t.Errorf("Parse returned a config with an error")
			}
			fes := fieldErrors(t, err)
			for _, fe := range fes {
				if fe.File != "hanat.yaml" {
					t.Errorf("error %q: File = %q", fe, fe.File)
				}
				if fe.Line == tc.line && fe.Key == tc.key && strings.Contains(fe.Msg, tc.msg) {
					// The formatted message names file, line, key.
					s := fe.Error()
					want := "hanat.yaml:"
					if tc.line > 0 {
						want += itoa(tc.line) + ":"
					}
					if !strings.HasPrefix(s, want) || !strings.Contains(s, tc.key) {
						t.Errorf("Error() = %q, want prefix %q and key %q", s, want, tc.key)
					}
					return
				}
			}
			t.Errorf("no error at line %d key %q containing %q; got:\n%v", tc.line, tc.key, tc.msg, err)
		})
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// The exact format from the issue.
func TestErrorFormat(t *testing.T) {
	in := `private_cidrs:
  - 10.0.0.0/16
port_forwards:
  - protocol: tcp
    port: 2222
    to: 10.0.11.5:22
  - protocol: tcp
    port: 8080
    to: "10.0.11.5:70000"
`
	_, err := Parse("hanat.yaml", []byte(in))
	want := `hanat.yaml:9: port_forwards[1].to: "10.0.11.5:70000": port out of range 1-65535`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}

	for _, tc := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "f", Line: 3, Key: "k", Value: "v", Msg: "m"}, `f:3: k: "v": m`},
		{FieldError{File: "f", Line: 3, Msg: "m"}, `f:3: m`},
		{FieldError{File: "f", Msg: "m"}, `f: m`},
		{FieldError{Key: "k", Msg: "m"}, `k: m`},
		{FieldError{Line: 2, Key: "k", Value: "a\tb", Msg: "m"}, `line 2: k: "a\tb": m`},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("%+v.Error() = %q, want %q", tc.e, got, tc.want)
		}
	}
}

// Every mistake in a file is reported, in line order, not just the first.
func TestParseReportsAllErrors(t *testing.T) {
	in := `snat:
  ports: 0-10
  adresses: []
port_forwards:
  - protocol: icmp
    port: 0
    to: 10.0.11.5:99999
log:
  level: loud
bogus: 1
`
	_, err := Parse("x.yaml", []byte(in))
	if err == nil {
		t.Fatal("want errors")
	}
	fes := fieldErrors(t, err)
	want := []struct {
		line int
		key  string
	}{
		{2, "snat.ports"},
		{3, "snat.adresses"},
		{5, "port_forwards[0].protocol"},
		{6, "port_forwards[0].port"},
		{7, "port_forwards[0].to"},
		{9, "log.level"},
		{10, "bogus"},
	}
	if len(fes) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(fes), len(want), err)
	}
	for i, w := range want {
		if fes[i].Line != w.line || fes[i].Key != w.key {
			t.Errorf("error %d = %q, want line %d key %s", i, fes[i], w.line, w.key)
		}
	}
}

// A key that failed to decode gets one message, not a second "required".
func TestNoDoubleReports(t *testing.T) {
	in := "port_forwards:\n  - protocol: tcp\n    port: '22'\n    to: 10.0.11.5\n"
	_, err := Parse("x.yaml", []byte(in))
	if fes := fieldErrors(t, err); len(fes) != 1 {
		t.Fatalf("got %d errors, want 1:\n%v", len(fes), err)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# only a comment\n# and another\n", "---\n", "null\n", "~\n", "{}\n", "snat:\nsysctl:\nlog: {}\nport_forwards: []\n"} {
		c, err := Parse("hanat.yaml", []byte(in))
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if !c.Equal(Default()) || !reflect.DeepEqual(c, Default()) {
			t.Errorf("Parse(%q) = %+v, want Default()", in, c)
		}
	}
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParseFull(t *testing.T) {
	in := `
interfaces:
  outside: ens5
private_cidrs:
  - 10.0.0.0/16
  - 172.31.0.0/16
snat:
  addresses: [10.0.1.10, 10.0.1.11]   # a SNAT address inside the VPC CIDR is normal
  ports: 2048 - 60999
port_forwards:
  - name: bastion-ssh
    protocol: tcp
    port: 2222
    to: 10.0.11.5:22
    sources: [203.0.113.0/24, 198.51.100.7/32]
  - protocol: udp
    port: 51820
    to: 10.0.12.9
  - protocol: tcp       # same port, other protocol: not a duplicate
    port: 51820
    to: 172.31.0.4
sysctl:
  manage: false
  conntrack_max: 262144
  tcp_established_timeout: 5m50s
  udp_timeout: 45
  udp_stream_timeout: 1d
cloud:
  discover: false
  imds_endpoint: http://127.0.0.1:1338
  ec2_endpoint: https://ec2.example.test
  manage_source_dest_check: false
metrics:
  cloudwatch:
    enabled: true
    namespace: hanat/prod
    interval: 30s
    endpoint: https://monitoring.example.test
host_input:
  filter: false
  tcp_ports: [2200]
  udp_ports: [51821]
fastpath:
  enabled: false
  mode: generic
  offload_after_packets: 40
admin:
  socket: /run/hanat/test.sock
  group: "1000"
log:
  level: debug
  format: json
state_dir: /srv/hanat
ha:
  enabled: true
  peer: 10.0.2.10
  port: 7000
  sync: false
  sync_port: 7100
  interval: 100ms
  dead_after: 4
  key_file: /etc/hanat/pair.key
  home_route_tables: [rtb-0a1]
  backup_route_tables: [rtb-0c1, rtb-0c2]
  preempt: false
  hold_down: 1m
  health:
    targets: [203.0.113.10:80, "checkip.amazonaws.com:443"]
    interval: 500ms
    timeout: 300ms
  eips:
    - allocation_id: eipalloc-0abc
      route_tables: [rtb-0a1]
`
	c, err := Parse("full.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Interfaces:   Interfaces{Outside: "ens5"},
		PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16"), netip.MustParsePrefix("172.31.0.0/16")},
		SNAT: SNAT{
			Addresses: []netip.Addr{netip.MustParseAddr("10.0.1.10"), netip.MustParseAddr("10.0.1.11")},
			Ports:     PortRange{2048, 60999},
		},
		PortForwards: []PortForward{
			{Name: "bastion-ssh", Protocol: "tcp", Port: 2222, To: netip.MustParseAddrPort("10.0.11.5:22"),
				Sources: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("198.51.100.7/32")}},
			{Protocol: "udp", Port: 51820, To: netip.MustParseAddrPort("10.0.12.9:51820")},
			{Protocol: "tcp", Port: 51820, To: netip.MustParseAddrPort("172.31.0.4:51820")},
		},
		Sysctl: Sysctl{
			Manage:                false,
			ConntrackMax:          262144,
			TCPEstablishedTimeout: Duration{350 * time.Second},
			UDPTimeout:            Duration{45 * time.Second},
			UDPStreamTimeout:      Duration{24 * time.Hour},
		},
		Metrics: Metrics{Listen: "127.0.0.1:9469", CloudWatch: CloudWatch{Enabled: true, Namespace: "hanat/prod",
			Interval: Duration{30 * time.Second}, Endpoint: "https://monitoring.example.test"}},
		Cloud:     Cloud{IMDSEndpoint: "http://127.0.0.1:1338", EC2Endpoint: "https://ec2.example.test"},
		HostInput: HostInput{Filter: false, TCPPorts: []uint16{2200}, UDPPorts: []uint16{51821}},
		Fastpath:  Fastpath{Enabled: false, Mode: "generic", OffloadAfterPackets: 40},
		Admin:     Admin{Socket: "/run/hanat/test.sock", Group: "1000"},
		Log:       Log{Level: "debug", Format: "json"},
		StateDir:  "/srv/hanat",
		GWLB:      defaultGWLB(),
		HA: HA{Enabled: true, Peer: netip.MustParseAddr("10.0.2.10"), Port: 7000, Interval: Duration{100 * time.Millisecond},
			DeadAfter: 4, KeyFile: "/etc/hanat/pair.key", HomeRouteTables: []string{"rtb-0a1"},
			BackupRouteTables: []string{"rtb-0c1", "rtb-0c2"}, Preempt: false, HoldDown: Duration{time.Minute},
			Health: HAHealth{Targets: []string{"203.0.113.10:80", "checkip.amazonaws.com:443"},
				Interval: Duration{500 * time.Millisecond}, Timeout: Duration{300 * time.Millisecond}},
			EIPs: []HAEIP{{AllocationID: "eipalloc-0abc", RouteTables: []string{"rtb-0a1"}}}, Sync: false, SyncPort: 7100},
	}
	if !c.Equal(want) || !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// Anchors and aliases are plain YAML and work.
func TestParseAliases(t *testing.T) {
	in := `
port_forwards:
  - {protocol: tcp, port: 80, to: 10.0.11.5, sources: &office [203.0.113.0/24]}
  - {protocol: tcp, port: 443, to: 10.0.11.5, sources: *office}
`
	c, err := Parse("a.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.PortForwards[1].Sources; len(got) != 1 || got[0] != netip.MustParsePrefix("203.0.113.0/24") {
		t.Fatalf("sources via alias = %v", got)
	}
	// A self-referencing anchor must not loop.
	if _, err := Parse("a.yaml", []byte("private_cidrs: &x [*x]\n")); err == nil {
		t.Fatal("self-referencing alias accepted")
	}
}

func TestDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"350s": 350 * time.Second, "5m50s": 350 * time.Second, "350": 350 * time.Second,
		"1d": 24 * time.Hour, "1d12h": 36 * time.Hour, "2h": 2 * time.Hour, "0": 0, "-5s": -5 * time.Second,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "s", "d", "1d-5s", "1d+5s", "--5s", "5", "1.5", "1e3", "5 s", "1dd", "x1d", "99999999999d"} {
		if in == "5" || in == "1.5" {
			continue // "5" is fine (seconds); "1.5" is time.ParseDuration's problem: missing unit
		}
		if d, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want error", in, d)
		}
	}
	if _, err := ParseDuration("1.5"); err == nil {
		t.Errorf("ParseDuration(1.5) accepted a number without unit")
	}
}

func TestPortRangeText(t *testing.T) {
	r, err := ParsePortRange("1024-65535")
	if err != nil || r != (PortRange{1024, 65535}) || r.String() != "1024-65535" {
		t.Fatalf("ParsePortRange = %v, %v", r, err)
	}
	if _, err := ParsePortRange("1024"); err == nil || !strings.Contains(err.Error(), `"1024"`) {
		t.Fatalf("ParsePortRange(1024) err = %v, want one naming the value", err)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	c, err := Parse("rt.yaml", []byte(`
private_cidrs: [10.0.0.0/16]
snat: {addresses: [10.0.1.10]}
port_forwards:
  - {name: ssh, protocol: tcp, port: 2222, to: 10.0.11.5:22, sources: [203.0.113.0/24]}
`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"tcp_established_timeout":"5m50s"`, `"udp_timeout":"30s"`, `"ports":"1024-65535"`,
		`"to":"10.0.11.5:22"`, `"private_cidrs":["10.0.0.0/16"]`, `"state_dir":"/var/lib/hanat"`,
		`"interfaces":{"outside":""}`, `"conntrack_max":0`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s:\n%s", want, b)
		}
	}
	var back Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Equal(c) {
		t.Fatalf("JSON round trip changed the config:\n%+v\n%+v", &back, c)
	}
	if _, err := json.Marshal(Default()); err != nil {
		t.Fatal(err)
	}
}

// JSON and YAML keys are the same, and every YAML key of the schema is
// one the parser knows.
func TestTagsMatchParser(t *testing.T) {
	var paths []string
	var walk func(typ reflect.Type, prefix string)
	walk = func(typ reflect.Type, prefix string) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			y, j := f.Tag.Get("yaml"), f.Tag.Get("json")
			if y == "" || y != j {
				t.Errorf("%s.%s: yaml tag %q, json tag %q", typ, f.Name, y, j)
			}
			p := joinKey(prefix, y)
			ft := f.Type
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && ft.Elem().PkgPath() == typ.PkgPath() {
				walk(ft.Elem(), p+"[0]")
				continue
			}
			if ft.Kind() == reflect.Struct && ft.PkgPath() == typ.PkgPath() && ft.Name() != "Duration" && ft.Name() != "PortRange" {
				walk(ft, p)
				continue
			}
			paths = append(paths, p)
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	if len(paths) < 20 {
		t.Fatalf("only %d keys found: %v", len(paths), paths)
	}
	for _, p := range paths {
		// Build a flow-style document setting just this key (to a value
		// of the wrong kind) and check the parser does not call it unknown.
		doc := "{}"
		parts := strings.Split(p, ".")
		for i := len(parts) - 1; i >= 0; i-- {
			name, list := strings.CutSuffix(parts[i], "[0]")
			if list {
				doc = "[" + doc + "]"
			}
			doc = "{" + name + ": " + doc + "}"
		}
		_, err := Parse("tags.yaml", []byte(doc))
		if err != nil && strings.Contains(err.Error(), "unknown key") {
			t.Errorf("key %s: parser does not know it:\n%s\n%v", p, doc, err)
		}
	}
}

// example.yaml (shipped as /etc/hanat/hanat.yaml) is valid, spells out the
// defaults, and its commented-out port forward is valid too.
func TestExampleFile(t *testing.T) {
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("example.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Equal(Default()) {
		t.Errorf("example.yaml does not spell out the defaults: %+v", c)
	}
	// Uncomment the example entries ("#  - ..." lines under a key).
	var out []string
	inBlock := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "#  - ") {
			inBlock = true
		}
		if rest, ok := strings.CutPrefix(line, "#  "); ok && inBlock {
			line = "  " + rest
		} else {
			inBlock = false
		}
		out = append(out, line)
	}
	uncommented := strings.Join(out, "\n")
	uncommented = strings.NewReplacer("private_cidrs: []", "private_cidrs:", "port_forwards: []", "port_forwards:").Replace(uncommented)
	c, err = Parse("example.yaml", []byte(uncommented))
	if err != nil {
		t.Fatalf("%v\n%s", err, uncommented)
	}
	if len(c.PortForwards) != 1 || c.PortForwards[0].Name != "bastion-ssh" || len(c.PrivateCIDRs) != 1 {
		t.Fatalf("uncommented example: %+v", c)
	}
	// Every key of the schema appears in the example.
	for _, key := range []string{"interfaces:", "outside:", "private_cidrs:", "snat:", "addresses:", "ports:",
		"port_forwards:", "name:", "protocol:", "port:", "to:", "sources:", "sysctl:", "manage:", "conntrack_max:",
		"tcp_established_timeout:", "udp_timeout:", "udp_stream_timeout:", "fastpath:", "enabled:", "mode:",
		"admin:", "socket:", "group:", "log:", "level:", "format:", "state_dir:",
		"gwlb:", "health_check:", "address:", "path:", "deregistration_delay:", "lifecycle_hook:", "lifecycle_hook_name:"} {
		if !strings.Contains(string(data), key) {
			t.Errorf("example.yaml lacks %s", key)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.yaml")
	_, err := Load(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Load(missing) = %v, want fs.ErrNotExist naming the path", err)
	}

	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("log: {level: warn}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good)
	if err != nil || c.Log.Level != "warn" {
		t.Fatalf("Load(good) = %+v, %v", c, err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("log:\n  level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if err == nil || !strings.HasPrefix(err.Error(), bad+":2: log.level: \"loud\": ") {
		t.Fatalf("Load(bad) = %v", err)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("#"+strings.Repeat("x", MaxFileSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load(big) = %v", err)
	}
}

func TestCloneEqual(t *testing.T) {
	c, err := Parse("c.yaml", []byte(`
private_cidrs: [10.0.0.0/16]
snat: {addresses: [10.0.1.10]}
port_forwards:
  - {protocol: tcp, port: 22, to: 10.0.11.5, sources: [203.0.113.0/24]}
`))
	if err != nil {
		t.Fatal(err)
	}
	n := c.Clone()
	if !n.Equal(c) || !c.Equal(n) {
		t.Fatal("clone differs")
	}
	n.PrivateCIDRs[0] = netip.MustParsePrefix("10.1.0.0/16")
	n.SNAT.Addresses[0] = netip.MustParseAddr("10.0.1.11")
	n.PortForwards[0].Sources[0] = netip.MustParsePrefix("198.51.100.0/24")
	if c.PrivateCIDRs[0].String() != "10.0.0.0/16" || c.SNAT.Addresses[0].String() != "10.0.1.10" ||
		c.PortForwards[0].Sources[0].String() != "203.0.113.0/24" {
		t.Fatal("Clone shares slices with the original")
	}

	changes := []func(*Config){
		func(c *Config) { c.Interfaces.Outside = "eth1" },
		func(c *Config) { c.PrivateCIDRs = nil },
		func(c *Config) { c.SNAT.Addresses = append(c.SNAT.Addresses, netip.MustParseAddr("10.0.1.12")) },
		func(c *Config) { c.SNAT.Ports.Min = 2000 },
		func(c *Config) { c.PortForwards[0].Port = 23 },
		func(c *Config) { c.PortForwards[0].Sources = nil },
		func(c *Config) { c.PortForwards = nil },
		func(c *Config) { c.Sysctl.UDPTimeout.Duration++ },
		func(c *Config) { c.Fastpath.Mode = "native" },
		func(c *Config) { c.Admin.Group = "wheel" },
		func(c *Config) { c.Log.Format = "json" },
		func(c *Config) { c.StateDir = "/tmp" },
		func(c *Config) { c.HA.Peer = netip.MustParseAddr("10.0.2.10") },
		func(c *Config) { c.HA.HomeRouteTables = []string{"rtb-1"} },
		func(c *Config) { c.HA.Health.Targets = []string{"a:1"} },
		func(c *Config) { c.HA.EIPs = []HAEIP{{AllocationID: "eipalloc-1"}} },
		func(c *Config) { c.HA.HoldDown.Duration++ },
	}
	for i, change := range changes {
		n := c.Clone()
		change(n)
		if n.Equal(c) {
			t.Errorf("change %d not seen by Equal", i)
		}
	}
	// nil and empty lists are the same configuration.
	a, b := Default(), Default()
	b.PrivateCIDRs = []netip.Prefix{}
	if !a.Equal(b) {
		t.Error("nil and empty private_cidrs differ")
	}
	var nilCfg *Config
	if !nilCfg.Equal(nil) || nilCfg.Equal(a) || a.Equal(nil) || nilCfg.Clone() != nil {
		t.Error("nil handling")
	}
}

// Validate checks configs built in code, with key paths and no file.
func TestValidateInCode(t *testing.T) {
	c := Default()
	c.SNAT.Ports = PortRange{5000, 4000}
	c.PortForwards = []PortForward{{Protocol: "sctp", Port: 0, To: netip.MustParseAddrPort("10.0.11.5:0")}}
	c.Log.Level = ""
	err := c.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	got := err.Error()
	for _, want := range []string{
		`snat.ports: "5000-4000": min 5000 is greater than max 4000`,
		`port_forwards[0].protocol: "sctp": must be "tcp" or "udp"`,
		`port_forwards[0].port: missing required key`,
		`log.level: must be one of debug, info, warn, error`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Validate() error lacks %q:\n%s", want, got)
		}
	}
}

// Aliases cannot blow a small file up into billions of values, and
// long lists stay cheap to check.
func TestParseLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("port_forwards:\n  - &f {protocol: tcp, port: 1, to: 10.0.0.1, sources: &s [")
	for i := 0; i < 2000; i++ {
		b.WriteString("203.0.113.0/24, ")
	}
	b.WriteString("]}\n")
	for i := 0; i < 2000; i++ {
		b.WriteString("  - *f\n")
	}
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "too many values") {
		t.Fatalf("alias bomb: err = %.300v", err)
	}

	b.Reset()
	b.WriteString("private_cidrs:\n")
	for i := 0; i < 2000; i++ {
		b.WriteString("  - 10.0.0.0/8\n")
	}
	_, err = Parse("long.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "private_cidrs: too many entries: 2000 (at most 1024)") {
		t.Fatalf("long private_cidrs: err = %.300v", err)
	}

	// Many errors are capped with a summary line.
	b.Reset()
	b.WriteString("snat:\n  addresses:\n")
	for i := 0; i < 300; i++ {
		b.WriteString("    - 0.0.0.0\n")
	}
	_, err = Parse("many.yaml", []byte(b.String()))
	fes := fieldErrors(t, err)
	if len(fes) != maxErrors+1 || !strings.Contains(fes[maxErrors].Msg, "200 more errors not shown") {
		t.Fatalf("got %d errors, last %v", len(fes), fes[len(fes)-1])
	}

	// A large valid file: 1000 port forwards.
	b.Reset()
	b.WriteString("private_cidrs: [10.0.0.0/16]\nport_forwards:\n")
	for i := 1; i <= 1000; i++ {
		b.WriteString("  - {protocol: udp, port: " + itoa(i) + ", to: 10.0.11.5, sources: [198.51.100.0/24, 203.0.113.0/24]}\n")
	}
	c, err := Parse("big.yaml", []byte(b.String()))
	if err != nil || len(c.PortForwards) != 1000 || c.PortForwards[999].To.Port() != 1000 {
		t.Fatalf("1000 forwards: %v", err)
	}
}

func TestHostInput(t *testing.T) {
	c, err := Parse("h.yaml", []byte("host_input:\n  tcp_ports: [22, 2222]\n  udp_ports: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.HostInput.Filter || len(c.HostInput.TCPPorts) != 2 || c.HostInput.TCPPorts[1] != 2222 || len(c.HostInput.UDPPorts) != 0 {
		t.Fatalf("host_input = %+v", c.HostInput)
	}
	for _, tc := range []struct{ in, want string }{
		{"host_input:\n  tcp_ports: [22, 22]\n", `h.yaml:2: host_input.tcp_ports[1]: "22": duplicate port`},
		{"host_input:\n  udp_ports: [0]\n", `h.yaml:2: host_input.udp_ports[0]: "0"`},
		{"host_input:\n  udp_ports: [65536]\n", `h.yaml:2: host_input.udp_ports[0]: "65536"`},
		{"host_input:\n  filtr: true\n", `h.yaml:2: host_input.filtr`},
		{"metrics:\n  listen: nohost\n", `h.yaml:2: metrics.listen: "nohost": want host:port`},
		{"metrics:\n  cloudwatch:\n    enabled: true\n    namespace: AWS/NATGateway\n", `h.yaml:4: metrics.cloudwatch.namespace: "AWS/NATGateway": AWS/ namespaces are reserved`},
		{"metrics:\n  cloudwatch:\n    interval: 0s\n", `h.yaml:3: metrics.cloudwatch.interval: "0s": out of range 1s-1h`},
		{"metrics:\n  cloudwatch:\n    endpoint: monitoring\n", `h.yaml:3: metrics.cloudwatch.endpoint: "monitoring"`},
		{"metrics:\n  cloudwatch:\n    enabld: true\n", `h.yaml:3: metrics.cloudwatch.enabld`},
		{"cloud:\n  ec2_endpoint: ftp://x\n", `h.yaml:2: cloud.ec2_endpoint: "ftp://x": must be an http:// or https:// URL`},
	} {
		_, err := Parse("h.yaml", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) error = %v, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

// TestFastpathModes: every fast-path mode and its aliases parse and are
// kept as written (the fast path resolves the aliases).
func TestFastpathModes(t *testing.T) {
	for _, mode := range []string{"auto", "xdp", "tc", "xdp-generic", "native", "generic"} {
		c, err := Parse("hanat.yaml", []byte("fastpath:\n  mode: "+mode+"\n"))
		if err != nil {
			t.Errorf("mode %s: %v", mode, err)
			continue
		}
		if c.Fastpath.Mode != mode {
			t.Errorf("mode %s parsed as %q", mode, c.Fastpath.Mode)
		}
	}
	for _, mode := range []string{"skb", "XDP", "tcx", "xdp_generic"} {
		if _, err := Parse("hanat.yaml", []byte("fastpath:\n  mode: "+mode+"\n")); err == nil {
			t.Errorf("mode %s accepted", mode)
		}
	}
}
