package ec2sim

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Limits on what one request may carry.
const (
	maxBodyBytes   = 1 << 20
	maxParams      = 4096
	maxListIndex   = 10000
	maxFilterCount = 200
)

// params is a parsed EC2 Query request: one value per parameter name.
type params map[string]string

// parseParams parses an EC2 Query request: the URL query and, for a
// form-encoded POST, the body. A parameter may appear once (in either).
func parseParams(rawQuery string, body []byte) (params, error) {
	p := params{}
	for _, src := range []string{rawQuery, string(body)} {
		if src == "" {
			continue
		}
		vals, err := url.ParseQuery(src)
		if err != nil {
			return nil, fmt.Errorf("parse query string: %w", err)
		}
		for k, vs := range vals {
			if k == "" {
				return nil, fmt.Errorf("parse query string: empty parameter name")
			}
			if len(vs) > 1 {
				return nil, fmt.Errorf("parse query string: parameter %q given %d times", k, len(vs))
			}
			if _, dup := p[k]; dup {
				return nil, fmt.Errorf("parse query string: parameter %q given twice", k)
			}
			p[k] = vs[0]
			if len(p) > maxParams {
				return nil, fmt.Errorf("parse query string: more than %d parameters", maxParams)
			}
		}
	}
	return p, nil
}

func (p params) str(name string) string { return p[name] }

// required returns the parameter or MissingParameter.
func (p params) required(name string) (string, *APIError) {
	v, ok := p[name]
	if !ok || v == "" {
		return "", errMissing(name)
	}
	return v, nil
}

// boolean parses an optional boolean parameter (absent = def).
func (p params) boolean(name string, def bool) (bool, *APIError) {
	v, ok := p[name]
	if !ok {
		return def, nil
	}
	switch strings.ToLower(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errInvalidParam("Value (%s) for parameter %s is invalid. Expected a boolean.", v, name)
}

func (p params) has(name string) bool {
	_, ok := p[name]
	return ok
}

// index parses a list index: a positive decimal without sign or leading zero.
func parseIndex(s string) (int, bool) {
	if s == "" || s[0] == '0' || len(s) > 5 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxListIndex {
		return 0, false
	}
	return n, true
}

// list returns prefix.1, prefix.2, … in index order (gaps allowed).
func (p params) list(prefix string) ([]string, *APIError) {
	type item struct {
		i int
		v string
	}
	var items []item
	for k, v := range p {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		i, ok := parseIndex(rest)
		if !ok {
			return nil, errInvalidParam("Invalid list index in parameter %s", k)
		}
		items = append(items, item{i, v})
	}
	slices.SortFunc(items, func(a, b item) int { return a.i - b.i })
	out := make([]string, len(items))
	for n, it := range items {
		out[n] = it.v
	}
	return out, nil
}

// structs groups prefix.N.FIELD… parameters by N (in index order); the map
// holds everything after "prefix.N.".
func (p params) structs(prefix string) ([]map[string]string, *APIError) {
	byIndex := map[int]map[string]string{}
	for k, v := range p {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		idx, field, ok := strings.Cut(rest, ".")
		if !ok || field == "" {
			return nil, errInvalidParam("Invalid parameter %s", k)
		}
		i, ok := parseIndex(idx)
		if !ok {
			return nil, errInvalidParam("Invalid list index in parameter %s", k)
		}
		if byIndex[i] == nil {
			byIndex[i] = map[string]string{}
		}
		byIndex[i][field] = v
	}
	keys := make([]int, 0, len(byIndex))
	for i := range byIndex {
		keys = append(keys, i)
	}
	slices.Sort(keys)
	out := make([]map[string]string, len(keys))
	for n, i := range keys {
		out[n] = byIndex[i]
	}
	return out, nil
}

// filter is one Filter.N: a name and the values any of which may match.
type filter struct {
	name   string
	values []string
}

// filters parses Filter.N.Name / Filter.N.Value.M.
func (p params) filters() ([]filter, *APIError) {
	raw, err := p.structs("Filter")
	if err != nil {
		return nil, err
	}
	if len(raw) > maxFilterCount {
		return nil, errInvalidParam("The request has more than %d filters", maxFilterCount)
	}
	out := make([]filter, 0, len(raw))
	for _, fields := range raw {
		f := filter{name: fields["Name"]}
		if f.name == "" {
			return nil, errMissing("Filter.N.Name")
		}
		sub := params{}
		for k, v := range fields {
			switch {
			case k == "Name":
			case strings.HasPrefix(k, "Value."):
				sub[k] = v
			default:
				return nil, errInvalidParam("Invalid filter parameter Filter.N.%s", k)
			}
		}
		vals, err := sub.list("Value")
		if err != nil {
			return nil, err
		}
		if len(vals) == 0 {
			return nil, errInvalidParam("The filter '%s' has no values", f.name)
		}
		f.values = vals
		out = append(out, f)
	}
	return out, nil
}

// tagParam is one Tag.N: its key and value, and whether Tag.N.Value was
// given at all (DeleteTags tells a missing value from an empty one).
type tagParam struct {
	key, value string
	hasValue   bool
}

// tagParams parses Tag.N.Key / Tag.N.Value.
func (p params) tagParams() ([]tagParam, *APIError) {
	raw, err := p.structs("Tag")
	if err != nil {
		return nil, err
	}
	out := make([]tagParam, 0, len(raw))
	for _, fields := range raw {
		for k := range fields {
			if k != "Key" && k != "Value" {
				return nil, errInvalidParam("Invalid tag parameter Tag.N.%s", k)
			}
		}
		v, ok := fields["Value"]
		out = append(out, tagParam{key: fields["Key"], value: v, hasValue: ok})
	}
	return out, nil
}

// fieldFunc returns the values a resource has for a filter name.
type fieldFunc func(name string) []string

// checkFilters rejects filter names a Describe call does not know.
func checkFilters(fs []filter, known []string) *APIError {
	for _, f := range fs {
		if strings.HasPrefix(f.name, "tag:") && len(f.name) > 4 {
			continue
		}
		if f.name == "tag-key" || f.name == "tag-value" || slices.Contains(known, f.name) {
			continue
		}
		return errInvalidParam("The filter '%s' is invalid", f.name)
	}
	return nil
}

// matchFilters: every filter must match; a filter matches when any of its
// values (with * and ? wildcards) equals any of the resource's values.
func matchFilters(fs []filter, tags map[string]string, field fieldFunc) bool {
	for _, f := range fs {
		var have []string
		switch {
		case strings.HasPrefix(f.name, "tag:"):
			if v, ok := tags[f.name[4:]]; ok {
				have = []string{v}
			}
		case f.name == "tag-key":
			for k := range tags {
				have = append(have, k)
			}
		case f.name == "tag-value":
			for _, v := range tags {
				have = append(have, v)
			}
		default:
			have = field(f.name)
		}
		if !anyMatch(f.values, have) {
			return false
		}
	}
	return true
}

func anyMatch(patterns, have []string) bool {
	for _, p := range patterns {
		for _, h := range have {
			if globMatch(p, h) {
				return true
			}
		}
	}
	return false
}

// globMatch matches s against p where * is any run and ? one character (the
// EC2 filter wildcards); \ escapes the next character.
func globMatch(p, s string) bool {
	// Iterative with single backtrack point: linear-ish, no recursion.
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			c := p[pi]
			switch {
			case c == '*':
				starP, starS = pi, si
				pi++
				continue
			case c == '?':
				pi++
				si++
				continue
			case c == '\\' && pi+1 < len(p):
				if p[pi+1] == s[si] {
					pi += 2
					si++
					continue
				}
			case c == s[si]:
				pi++
				si++
				continue
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// paginate applies MaxResults / NextToken to items (already filtered, in
// stable order). kind binds a token to the call that issued it.
func paginate[T any](p params, kind string, items []T, minResults, maxResults int) ([]T, string, *APIError) {
	start := 0
	if tok, ok := p["NextToken"]; ok && tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		k, off, found := strings.Cut(string(raw), ":")
		n, err2 := strconv.Atoi(off)
		if err != nil || !found || k != kind || err2 != nil || n < 0 || n > len(items) {
			return nil, "", errInvalidParam("Invalid value '%s' for nextToken", tok)
		}
		start = n
	}
	limit := len(items) - start
	if v, ok := p["MaxResults"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < minResults || n > maxResults {
			return nil, "", errInvalidParam("Value ( %s ) for parameter maxResults is invalid. Expecting a value between %d and %d.", v, minResults, maxResults)
		}
		limit = min(n, limit)
	}
	page := items[start : start+limit]
	next := ""
	if end := start + limit; end < len(items) {
		next = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%s:%d", kind, end))
	}
	return page, next, nil
}

func parsePrefixParam(name, v string) (netip.Prefix, *APIError) {
	pfx, err := netip.ParsePrefix(v)
	if err != nil || !pfx.Addr().Is4() {
		return netip.Prefix{}, errInvalidParam("Value (%s) for parameter %s is invalid. This is not a valid CIDR block.", v, name)
	}
	if pfx.Masked() != pfx {
		return netip.Prefix{}, errInvalidParam("Value (%s) for parameter %s is invalid. This is not a valid CIDR block (host bits set).", v, name)
	}
	return pfx, nil
}

func parseAddrParam(name, v string) (netip.Addr, *APIError) {
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return netip.Addr{}, errInvalidParam("Value (%s) for parameter %s is invalid. This is not a valid IPv4 address.", v, name)
	}
	return a, nil
}
