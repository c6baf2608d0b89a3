package ec2sim

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseQuery: the Query parser and everything that reads numbered
// lists, filters, tags and pagination tokens from it never panic, and an
// action run on whatever parsed answers with a result or an API error.
func FuzzParseQuery(f *testing.F) {
	for _, seed := range []string{
		"Action=DescribeRouteTables&Version=2016-11-15&Filter.1.Name=tag%3AName&Filter.1.Value.1=private-*&MaxResults=5",
		"Action=CreateRoute&RouteTableId=rtb-1&DestinationCidrBlock=0.0.0.0%2F0&NetworkInterfaceId=eni-1",
		"RouteTableId.1=a&RouteTableId.2=b&RouteTableId.10=c",
		"Filter.1.Name=x&Filter.1.Value.01=y",
		"Filter.99999999999999999999.Name=x",
		"Tag.1.Key=k&Tag.1.Value=v&Tag.2.Key=&ResourceId.1=vpc-1",
		"NextToken=cnRiOjU&MaxResults=100",
		"a=1&a=2",
		"%zz=1",
		"x;y",
		"PrivateIpAddress.1=10.0.1.50&SecondaryPrivateIpAddressCount=2",
		"Filter.1.Value.1=*?*\\",
		"",
	} {
		f.Add(seed, "")
		f.Add("", seed)
	}
	m := fuzzModel()
	f.Fuzz(func(t *testing.T, query, body string) {
		p, err := parseParams(query, []byte(body))
		if err != nil {
			return
		}
		_, _ = p.list("RouteTableId")
		_, _ = p.structs("Tag")
		_, _ = p.tagParams()
		if fs, aerr := p.filters(); aerr == nil {
			for _, flt := range fs {
				for _, v := range flt.values {
					globMatch(v, flt.name)
				}
			}
		}
		_, _, _ = paginate(p, "rtb", []int{1, 2, 3, 4, 5, 6, 7}, 5, 100)
		// Every action on the fuzzed parameters: a response or an APIError.
		for name, fn := range actions {
			resp, aerr := fn(m, context.Background(), p)
			if (resp == nil) == (aerr == nil) {
				t.Fatalf("%s returned neither or both of a response and an error", name)
			}
		}
	})
}

// fuzzModel is a small model whose ids are predictable to the fuzzer only
// by luck; mutations go to NopFabric.
func fuzzModel() *Model {
	m := NewModel(testRegion, nil, nil)
	vpc := m.AddVPC(mustPrefix("10.0.0.0/16"), nil)
	m.AddInternetGateway(vpc)
	s := m.AddSubnet(vpc, mustPrefix("10.0.1.0/24"), "us-sim-1a", map[string]string{"Name": "a"})
	m.AddRouteTable(vpc, true, nil)
	in := m.AddInstance("", s, nil)
	m.AddNetworkInterface(s, in, 0, nil, mustAddr("10.0.1.10"), nil)
	m.AllocateAddress(mustAddr("198.51.100.1"))
	return m
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"private-*", "private-a", true},
		{"private-*", "public-a", false},
		{"?", "a", true},
		{"?", "", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"\\*", "*", true},
		{"\\*", "a", false},
		{"10.0.*.0/24", "10.0.11.0/24", true},
		{"exact", "exact", true},
		{"exact", "exactly", false},
	} {
		if got := globMatch(tc.p, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

// TestHandlerRejectsOddRequests: methods, content types and sizes the
// Query API does not take are answered with an error document.
func TestHandlerRejectsOddRequests(t *testing.T) {
	m := fuzzModel()
	h := m.EC2Handler(testCreds)
	for _, tc := range []struct {
		method, ct, body string
		status           int
	}{
		{http.MethodPut, "application/x-www-form-urlencoded", "Action=DescribeVpcs", http.StatusMethodNotAllowed},
		{http.MethodPost, "application/json", `{"Action":"DescribeVpcs"}`, http.StatusBadRequest},
		{http.MethodPost, "application/x-www-form-urlencoded", strings.Repeat("a", maxBodyBytes+1), http.StatusRequestEntityTooLarge},
		{http.MethodPost, "application/x-www-form-urlencoded", "Action=DescribeVpcs", http.StatusUnauthorized},
	} {
		req := httptest.NewRequest(tc.method, "/", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ct)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), "<Errors><Error><Code>") {
			t.Errorf("%s %s: %d %q, want %d", tc.method, tc.ct, rec.Code, rec.Body.String(), tc.status)
		}
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
