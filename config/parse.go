package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds the configuration file; a NAT's config is a few KiB.
const MaxFileSize = 1 << 20

// maxErrors bounds how many errors one Parse reports; the rest are
// summarised in one last error.
const maxErrors = 100

// Load reads and parses the configuration file at path. A missing file is
// an error wrapping fs.ErrNotExist that names the path; the caller decides
// whether that means "use Default()".
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse parses and validates a configuration file's contents. name is the
// file name used in error messages. On any mistake it returns nil and
// errors.Join of one *FieldError per mistake found, in line order.
// An empty document (or only comments) yields Default().
func Parse(name string, data []byte) (*Config, error) {
	d := &decoder{file: name, data: data, pos: map[string]pos{}, failed: map[string]bool{}}
	c := Default()
	if len(data) > MaxFileSize {
		d.add(&FieldError{File: name, Msg: fmt.Sprintf("file larger than %d bytes", MaxFileSize)})
		return nil, d.err()
	}
	root := d.parseYAML(data)
	if len(d.errs) > 0 {
		return nil, d.err()
	}
	if root != nil {
		d.config(c, root)
	}
	validate(c, d)
	if err := d.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// pos is where a key path's value was written.
type pos struct {
	line int
	raw  string // scalar text as written; "" for collections
	null bool   // written as null ("key:" or "key: ~"): same as left out
}

// decoder walks the yaml.Node tree by hand: it knows line numbers and key
// paths, and collects every error instead of stopping at the first.
type decoder struct {
	file   string
	data   []byte
	errs   []*FieldError
	pos    map[string]pos  // key path → where it was written
	failed map[string]bool // key paths whose value could not be decoded
	values int             // values decoded so far, see spend
}

func (d *decoder) add(e *FieldError) {
	d.errs = append(d.errs, e)
}

// errorf records an error at key path (marked failed, so validation does
// not pile a second message on the same key).
func (d *decoder) errorf(path string, line int, value string, format string, args ...any) {
	if path != "" {
		d.failed[path] = true
	}
	d.add(&FieldError{File: d.file, Line: line, Key: path, Value: value, Msg: fmt.Sprintf(format, args...)})
}

// err returns the collected errors sorted by line, nil if there are none.
func (d *decoder) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.errs, func(a, b *FieldError) int { return a.Line - b.Line })
	errs := d.errs
	if len(errs) > maxErrors {
		more := len(errs) - maxErrors
		errs = append(errs[:maxErrors:maxErrors], &FieldError{File: d.file, Msg: fmt.Sprintf("%d more errors not shown", more)})
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

// locate implements locator for validate: the line and text of a key
// path, falling back to the nearest enclosing key that was written.
func (d *decoder) locate(path string) (line int, raw string, written bool) {
	if p, ok := d.pos[path]; ok {
		return p.line, p.raw, !p.null
	}
	for path != "" {
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
		if p, ok := d.pos[path]; ok {
			return p.line, "", false
		}
	}
	return 0, "", false
}

// suppressed reports whether path, or a key enclosing it, already has a
// decode error.
func (d *decoder) suppressed(path string) bool {
	for {
		if d.failed[path] {
			return true
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return false
		}
		path = path[:i]
	}
}

func (d *decoder) fileName() string { return d.file }

// parseYAML parses data into one document's root node; nil for an empty
// document. Syntax errors are recorded.
func (d *decoder) parseYAML(data []byte) (root *yaml.Node) {
	defer func() {
		// The YAML library must not take the daemon down on odd input.
		if r := recover(); r != nil {
			d.add(&FieldError{File: d.file, Msg: fmt.Sprintf("invalid YAML: parser failed: %v", r)})
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			d.syntaxError(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err)
		return nil
	default:
		d.add(&FieldError{File: d.file, Line: next.Line, Msg: "more than one YAML document (---); the configuration is one document"})
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil
	}
	return doc.Content[0]
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserErrors are the yaml.v3 parser (not scanner) messages: their
// line numbers are 0-based and point at the enclosing construct.
var yamlParserErrors = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if yamlParserErrors[msg] {
			line++
		}
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
		if !strings.Contains(msg, "anchor") {
			// yaml.v3 leaves the line out when it is the first one.
			line = 1
		}
	}
	// Errors at the end of the stream may point one past the last line.
	if n := lineCount(d.data); line > n {
		line = n
	}
	if m := yamlAnchorRE.FindStringSubmatch(msg); m != nil {
		line = lineOf(d.data, "*"+m[1])
	}
	if line > 0 && bytes.ContainsRune(lineText(d.data, line), '\t') {
		msg += " (tabs cannot indent YAML; use spaces)"
	}
	d.add(&FieldError{File: d.file, Line: line, Msg: "invalid YAML: " + msg})
}

var yamlAnchorRE = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)

// lineText returns line n (1-based) of data.
func lineText(data []byte, n int) []byte {
	for i := 1; i < n; i++ {
		j := bytes.IndexByte(data, '\n')
		if j < 0 {
			return nil
		}
		data = data[j+1:]
	}
	if j := bytes.IndexByte(data, '\n'); j >= 0 {
		data = data[:j]
	}
	return data
}

// lineOf returns the first line (1-based) holding s, 0 if none does.
func lineOf(data []byte, s string) int {
	i := bytes.Index(data, []byte(s))
	if i < 0 {
		return 0
	}
	return bytes.Count(data[:i], []byte("\n")) + 1
}

// lineCount is the number of lines in data (a last line without a
// newline counts).
func lineCount(data []byte) int {
	n := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		n++
	}
	return n
}

// resolve follows an alias to its anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is an explicit or implied null ("key:" or
// "key: ~"), which leaves the default in place.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names a node's kind for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		case "!!str":
			return "a string"
		default:
			return "a value tagged " + n.ShortTag()
		}
	}
	return "an unknown node"
}

// scalarText returns the text of a scalar for error messages.
func scalarText(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return ""
}

// field decodes the value of one key; path is its key path.
type field func(path string, v *yaml.Node)

// mapping walks a mapping node, dispatching known keys to fields and
// reporting unknown and duplicate keys. A null node keeps the defaults.
func (d *decoder) mapping(path string, n *yaml.Node, fields map[string]field) bool {
	n = resolve(n)
	if isNull(n) {
		return false
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(path, n.Line, scalarText(n), "expected a mapping (key: value), got %s", describe(n))
		return false
	}
	if !d.spend(path, n, len(n.Content)/2) {
		return false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(path, k.Line, "", "keys must be plain strings, got %s", describe(k))
			continue
		}
		kp := joinKey(path, k.Value)
		if k.ShortTag() == "!!merge" {
			d.errorf(kp, k.Line, "", "merge keys (<<) are not supported; write the keys out")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(kp, k.Line, "", "duplicate key, first defined at line %d", first)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fields[k.Value]
		if !ok {
			d.errorf(kp, k.Line, "", "unknown key%s", suggest(k.Value, fields))
			continue
		}
		line := v.Line
		if line == 0 || resolve(v).Kind != yaml.ScalarNode {
			line = k.Line // collections: point at their key
		}
		d.pos[kp] = pos{line: line, raw: scalarText(resolve(v)), null: isNull(resolve(v))}
		f(kp, v)
	}
	return true
}

// maxValues bounds the values one Parse decodes. Aliases can make a small
// file expand to billions of values; a real config has a few hundred.
const maxValues = 200_000

// spend accounts for n more values, and records one error and returns
// false once the budget is exhausted.
func (d *decoder) spend(path string, node *yaml.Node, n int) bool {
	if d.values > maxValues {
		return false
	}
	d.values += n
	if d.values > maxValues {
		d.errorf(path, node.Line, "", "too many values (more than %d, counting those repeated through aliases)", maxValues)
		return false
	}
	return true
}

// sequence walks a list node, calling item for each element. A null node
// leaves the default (empty) list.
func (d *decoder) sequence(path string, n *yaml.Node, item func(path string, i int, v *yaml.Node)) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(path, n.Line, scalarText(n), "expected a list, got %s", describe(n))
		return
	}
	if !d.spend(path, n, len(n.Content)) {
		return
	}
	for i, v := range n.Content {
		ip := path + "[" + strconv.Itoa(i) + "]"
		rv := resolve(v)
		d.pos[ip] = pos{line: v.Line, raw: scalarText(rv), null: isNull(rv)}
		if isNull(rv) {
			// Still passed to item, which keeps a placeholder so the
			// indexes of later entries stay right.
			d.errorf(ip, v.Line, "", "empty list entry")
		}
		item(ip, i, v)
	}
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest returns " (did you mean "x"?)" for a near miss, else the list of
// valid keys.
func suggest(key string, fields map[string]field) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	slices.Sort(names)
	best, bestDist := "", 3
	for _, name := range names {
		if dist := editDistance(strings.ToLower(key), name); dist < bestDist {
			best, bestDist = name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (valid keys: " + strings.Join(names, ", ") + ")"
}

// editDistance is the Levenshtein distance, bounded to short keys.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// scalar returns a scalar's text. ok is false for null (keep the default)
// and for errors, which it records.
func (d *decoder) scalar(path string, n *yaml.Node, want string) (string, bool) {
	n = resolve(n)
	if isNull(n) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(path, n.Line, "", "expected %s, got %s", want, describe(n))
		return "", false
	}
	switch tag := n.ShortTag(); {
	case tag == "!!binary" || tag == "!!merge" || !strings.HasPrefix(tag, "!!"):
		d.errorf(path, n.Line, n.Value, "unsupported YAML tag %s", tag)
		return "", false
	}
	return n.Value, true
}

// str decodes a string. Numbers are taken as written ("8080" is a fine
// name); booleans are rejected as a likely mistake.
func (d *decoder) str(dst *string) field {
	return func(path string, n *yaml.Node) {
		s, ok := d.scalar(path, n, "a string")
		if !ok {
			return
		}
		if resolve(n).ShortTag() == "!!bool" {
			d.errorf(path, resolve(n).Line, s, "expected a string, got a boolean")
			return
		}
		*dst = s
	}
}

// boolean decodes true or false, nothing else (no yes/no/on/off).
func (d *decoder) boolean(dst *bool) field {
	return func(path string, n *yaml.Node) {
		s, ok := d.scalar(path, n, "true or false")
		if !ok {
			return
		}
		if resolve(n).ShortTag() != "!!bool" {
			d.errorf(path, resolve(n).Line, s, "expected true or false, got %s", describe(resolve(n)))
			return
		}
		*dst = s == "true" || s == "True" || s == "TRUE"
	}
}

// integer decodes a decimal integer tagged !!int; outOfRange is the
// message when it does not fit [lo, hi] (a representation limit; validate
// applies the semantic range).
func (d *decoder) integer(path string, n *yaml.Node, lo, hi int64, outOfRange string) (int64, bool) {
	s, ok := d.scalar(path, n, "an integer")
	if !ok {
		return 0, false
	}
	rn := resolve(n)
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	// yaml.v3 tags integers too large for int64 as !!float.
	if tag := rn.ShortTag(); tag != "!!int" && (tag != "!!float" || !isDecimal(digits)) {
		d.errorf(path, rn.Line, s, "expected an integer, got %s", describe(rn))
		return 0, false
	}
	if !isDecimal(digits) {
		d.errorf(path, rn.Line, s, "expected a decimal integer")
		return 0, false
	}
	if len(digits) > 1 && digits[0] == '0' {
		d.errorf(path, rn.Line, s, "leading zero: YAML may read this as octal; write the decimal number")
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < lo || v > hi {
		d.errorf(path, rn.Line, s, "%s", outOfRange)
		return 0, false
	}
	return v, true
}

func (d *decoder) port(dst *uint16) field {
	return func(path string, n *yaml.Node) {
		if v, ok := d.integer(path, n, 0, 65535, msgPortRange); ok {
			*dst = uint16(v)
		}
	}
}

// maxOffloadAfterPackets bounds fastpath.offload_after_packets: beyond a
// million packets a flow is offloaded too late to matter.
const maxOffloadAfterPackets = 1_000_000

func (d *decoder) offloadAfterPackets(dst *int) field {
	return func(path string, n *yaml.Node) {
		if v, ok := d.integer(path, n, 0, maxOffloadAfterPackets, "must be 0 (offload at once) to 1000000 packets"); ok {
			*dst = int(v)
		}
	}
}

func (d *decoder) conntrackMax(dst *int) field {
	return func(path string, n *yaml.Node) {
		if v, ok := d.integer(path, n, 0, conntrackMaxHi, msgConntrackMax); ok {
			*dst = int(v)
		}
	}
}

// duration decodes "350s", "5m50s", "1d" or an integer number of seconds.
func (d *decoder) duration(dst *Duration) field {
	return func(path string, n *yaml.Node) {
		s, ok := d.scalar(path, n, "a duration")
		if !ok {
			return
		}
		rn := resolve(n)
		digits := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
		switch tag := rn.ShortTag(); {
		case tag == "!!int" || tag == "!!str":
		case tag == "!!float" && isDecimal(digits): // too large for int64
		default:
			d.errorf(path, rn.Line, s, "expected a duration (350s, 5m50s, or seconds), got %s", describe(rn))
			return
		}
		v, msg := parseDuration(s)
		if msg != "" {
			d.errorf(path, rn.Line, s, "%s", msg)
			return
		}
		dst.Duration = v
	}
}

// text decodes a string scalar with parse; parse returns an error message.
func (d *decoder) text(path string, n *yaml.Node, want string, parse func(string) string) {
	s, ok := d.scalar(path, n, want)
	if !ok {
		return
	}
	if msg := parse(s); msg != "" {
		d.errorf(path, resolve(n).Line, s, "%s", msg)
	}
}

func (d *decoder) prefix(dst *netip.Prefix) field {
	return func(path string, n *yaml.Node) {
		d.text(path, n, "a CIDR prefix", func(s string) string {
			p, msg := parsePrefix(s)
			*dst = p
			return msg
		})
	}
}

func (d *decoder) addr(dst *netip.Addr) field {
	return func(path string, n *yaml.Node) {
		d.text(path, n, "an IP address", func(s string) string {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return "invalid IP address" + netipDetail(err)
			}
			*dst = a
			return ""
		})
	}
}

func (d *decoder) portRange(dst *PortRange) field {
	return func(path string, n *yaml.Node) {
		d.text(path, n, "a port range", func(s string) string {
			r, msg := parsePortRange(s)
			if msg == "" {
				*dst = r
			}
			return msg
		})
	}
}

// parsePrefix parses a CIDR prefix. Host bits are kept: validate reports
// them with the masked suggestion.
func parsePrefix(s string) (netip.Prefix, string) {
	p, err := netip.ParsePrefix(s)
	if err == nil {
		return p, ""
	}
	if !strings.Contains(s, "/") {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			return netip.Prefix{}, fmt.Sprintf("not a CIDR prefix: missing /length (did you mean %s/%d?)", a, a.BitLen())
		}
	}
	return netip.Prefix{}, "invalid CIDR prefix" + netipDetail(err)
}

// netipDetail turns `netip.ParseX("v"): why` into ": why" (the value is
// already in the message).
func netipDetail(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		msg = msg[i+3:]
	}
	return ": " + msg
}

// parseTo parses a port forward target "host:port", "[v6]:port" or a bare
// address (port 0: filled from the listen port by the caller).
func parseTo(s string) (netip.AddrPort, bool, string) {
	host, port := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.Index(s, "]")
		if end < 0 {
			return netip.AddrPort{}, false, "invalid address: missing ]"
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return netip.AddrPort{}, false, "invalid address: expected :port after ]"
			}
			port = p
		}
	case strings.Count(s, ":") == 1:
		host, port, _ = strings.Cut(s, ":")
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, false, "invalid address" + netipDetail(err)
	}
	if port == "" && host != s && !strings.HasPrefix(s, "[") {
		return netip.AddrPort{}, false, "invalid port: empty"
	}
	if port == "" {
		return netip.AddrPortFrom(a, 0), true, ""
	}
	p, msg := parsePort(port)
	if msg != "" {
		return netip.AddrPort{}, false, msg
	}
	return netip.AddrPortFrom(a, p), false, ""
}

// config decodes the root mapping into c (which holds the defaults).
func (d *decoder) config(c *Config, root *yaml.Node) {
	d.mapping("", root, map[string]field{
		"interfaces": func(path string, v *yaml.Node) {
			d.mapping(path, v, map[string]field{
				"outside": d.str(&c.Interfaces.Outside),
			})
		},
		"private_cidrs": func(path string, v *yaml.Node) {
			c.PrivateCIDRs = d.prefixes(path, v)
		},
		"snat": func(path string, v *yaml.Node) {
			d.mapping(path, v, map[string]field{
				"addresses": d.addrs(&c.SNAT.Addresses),
				"ports":     d.portRange(&c.SNAT.Ports),
			})
		},
		"port_forwards": func(path string, v *yaml.Node) {
			var out []PortForward
			d.sequence(path, v, func(path string, _ int, v *yaml.Node) {
				out = append(out, d.portForward(path, v))
			})
			c.PortForwards = out
		},
		"sysctl": func(path string, v *yaml.Node) {
			s := &c.Sysctl
			d.mapping(path, v, map[string]field{
				"manage":                  d.boolean(&s.Manage),
				"conntrack_max":           d.conntrackMax(&s.ConntrackMax),
				"tcp_established_timeout": d.duration(&s.TCPEstablishedTimeout),
				"udp_timeout":             d.duration(&s.UDPTimeout),
				"udp_stream_timeout":      d.duration(&s.UDPStreamTimeout),
			})
		},
		"host_input": func(path string, v *yaml.Node) {
			d.mapping(path, v, map[string]field{
				"filter":    d.boolean(&c.HostInput.Filter),
				"tcp_ports": d.ports(&c.HostInput.TCPPorts),
				"udp_ports": d.ports(&c.HostInput.UDPPorts),
			})
		},
		"fastpath": func(path string, v *yaml.Node) {
			d.mapping(path, v, map[string]field{
				"enabled":               d.boolean(&c.Fastpath.Enabled),
				"mode":                  d.str(&c.Fastpath.Mode),
				"offload_after_packets": d.offloadAfterPackets(&c.Fastpath.OffloadAfterPackets),
			})
		},
		"admin": func(path string, v *yaml.Node) {
			d.mapping(path, v, map[string]field{
				"socket": d.str(&c.Admin.Socket),
				"group":  d.str(&c.Admin.Group),
			})
		},
		"log": func(path string, v *yaml.Node) {
			d.mapping(path, v, map[string]field{
				"level":  d.str(&c.Log.Level),
				"format": d.str(&c.Log.Format),
			})
		},
		"metrics": func(path string, v *yaml.Node) {
			d.mapping(path, v, map[string]field{
				"listen": d.str(&c.Metrics.Listen),
				"cloudwatch": func(path string, v *yaml.Node) {
					d.mapping(path, v, map[string]field{
						"enabled":   d.boolean(&c.Metrics.CloudWatch.Enabled),
						"namespace": d.str(&c.Metrics.CloudWatch.Namespace),
						"interval":  d.duration(&c.Metrics.CloudWatch.Interval),
						"endpoint":  d.str(&c.Metrics.CloudWatch.Endpoint),
					})
				},
			})
		},
		"cloud": func(path string, v *yaml.Node) {
			d.mapping(path, v, map[string]field{
				"discover":                 d.boolean(&c.Cloud.Discover),
				"imds_endpoint":            d.str(&c.Cloud.IMDSEndpoint),
				"ec2_endpoint":             d.str(&c.Cloud.EC2Endpoint),
				"manage_source_dest_check": d.boolean(&c.Cloud.ManageSourceDestCheck),
			})
		},
		"ha": func(path string, v *yaml.Node) {
			d.decodeHA(&c.HA, path, v)
		},
		"gwlb": func(path string, v *yaml.Node) {
			d.decodeGWLB(&c.GWLB, path, v)
		},
		"state_dir": d.str(&c.StateDir),
	})
}

// ports decodes a list of ports (1-65535); an empty list is allowed and
// means "none".
func (d *decoder) ports(dst *[]uint16) field {
	return func(path string, v *yaml.Node) {
		out := []uint16{}
		d.sequence(path, v, func(path string, _ int, v *yaml.Node) {
			var p uint16
			d.port(&p)(path, v)
			out = append(out, p)
		})
		*dst = out
	}
}

// addrs decodes a list of addresses. Entries that fail keep their index
// (as the zero Addr) so later messages name the right element.
func (d *decoder) addrs(dst *[]netip.Addr) field {
	return func(path string, v *yaml.Node) {
		var out []netip.Addr
		d.sequence(path, v, func(path string, _ int, v *yaml.Node) {
			var a netip.Addr
			d.addr(&a)(path, v)
			out = append(out, a)
		})
		*dst = out
	}
}

// prefixes decodes a list of prefixes. Entries that fail keep their index
// (as the zero Prefix) so later messages name the right element.
func (d *decoder) prefixes(path string, v *yaml.Node) []netip.Prefix {
	var out []netip.Prefix
	d.sequence(path, v, func(path string, _ int, v *yaml.Node) {
		var p netip.Prefix
		d.prefix(&p)(path, v)
		out = append(out, p)
	})
	return out
}

func (d *decoder) portForward(path string, n *yaml.Node) PortForward {
	var pf PortForward
	bare := false
	d.mapping(path, n, map[string]field{
		"name":     d.str(&pf.Name),
		"protocol": d.str(&pf.Protocol),
		"port":     d.port(&pf.Port),
		"to": func(path string, v *yaml.Node) {
			d.text(path, v, "an address host:port", func(s string) string {
				ap, noPort, msg := parseTo(s)
				pf.To, bare = ap, noPort
				return msg
			})
		},
		"sources": func(path string, v *yaml.Node) {
			pf.Sources = d.prefixes(path, v)
		},
	})
	if bare {
		pf.To = netip.AddrPortFrom(pf.To.Addr(), pf.Port)
	}
	return pf
}

// conntrack_max bounds, also used by validate.
const (
	conntrackMaxLo  = 1024
	conntrackMaxHi  = 67108864
	msgConntrackMax = "out of range: 0 (size from memory) or 1024-67108864"
)
