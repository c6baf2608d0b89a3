package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
)

func TestDecodeRequest(t *testing.T) {
	ok := []struct {
		body string
		want ReloadRequest
	}{
		{"", ReloadRequest{}},
		{" \n\t", ReloadRequest{}},
		{"{}", ReloadRequest{}},
		{` { "config_path" : "/etc/hanat/hanat.yaml" } ` + "\n", ReloadRequest{ConfigPath: "/etc/hanat/hanat.yaml"}},
		{`{"config_path":""}`, ReloadRequest{}},
	}
	for _, tt := range ok {
		got, err := DecodeRequest[ReloadRequest](strings.NewReader(tt.body), MaxRequestBody)
		if err != nil || got != tt.want {
			t.Errorf("DecodeRequest(%q) = %+v, %v; want %+v", tt.body, got, err, tt.want)
		}
	}
	bad := []struct{ body, wantErr string }{
		{`{"config_path": [`, "request body"},
		{`{"config_path": 1}`, "cannot unmarshal"},
		{`{"bogus": 1}`, "unknown field"},
		{`{} {}`, "after the JSON object"},
		{`{}x`, "after the JSON object"},
		{`[]`, "want one JSON object"},
		{`null`, "want one JSON object"},
		{`"x"`, "want one JSON object"},
		{`{"config_path":"a"`, "unexpected EOF"},
		{`{"config_path":"` + strings.Repeat("a", 100) + `"}`, "larger than 64 bytes"},
	}
	for _, tt := range bad {
		got, err := DecodeRequest[ReloadRequest](strings.NewReader(tt.body), 64)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("DecodeRequest(%.40q) error = %v, want one containing %q", tt.body, err, tt.wantErr)
		}
		if got != (ReloadRequest{}) {
			t.Errorf("DecodeRequest(%.40q) returned %+v with its error, want the zero value", tt.body, got)
		}
	}
	// Exactly at the limit is fine.
	body := `{"config_path":"` + strings.Repeat("a", 64-len(`{"config_path":""}`)) + `"}`
	if _, err := DecodeRequest[ReloadRequest](strings.NewReader(body), 64); err != nil {
		t.Errorf("body of exactly the limit: %v", err)
	}
	if _, err := DecodeRequest[ReloadRequest](iotest.ErrReader(errors.New("boom")), 64); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("read error: %v", err)
	}
	if _, err := DecodeRequest[ReloadRequest](strings.NewReader("{}"), 0); err == nil {
		t.Error("limit 0: want an error")
	}
	// Behind http.MaxBytesReader the message still names the limit.
	rec := httptest.NewRecorder()
	r := http.MaxBytesReader(rec, nopCloser{strings.NewReader(strings.Repeat(" ", 100))}, 10)
	if _, err := DecodeRequest[ReloadRequest](r, 64); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("MaxBytesReader: %v", err)
	}
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

func FuzzDecodeReloadRequest(f *testing.F) {
	for _, s := range []string{
		"", "{}", `{"config_path":"/etc/hanat/hanat.yaml"}`, `{"config_path": [`,
		`{"bogus":1}`, `{} {}`, `[]`, `null`, `{"config_path":"\u00e9\ud800"}`,
		`{"CONFIG_PATH":"x"}`, `{"config_path":"a","config_path":"b"}`, "\xff{}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := DecodeRequest[ReloadRequest](strings.NewReader(string(body)), MaxRequestBody)
		if err != nil {
			if got != (ReloadRequest{}) {
				t.Fatalf("error %v came with a non-zero value %+v", err, got)
			}
			return
		}
		// Whatever was accepted survives a round trip unchanged.
		enc, err := json.Marshal(got)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", got, err)
		}
		again, err := DecodeRequest[ReloadRequest](strings.NewReader(string(enc)), MaxRequestBody)
		if err != nil || again != got {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", enc, again, err, got)
		}
	})
}
