package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// DecodeRequest decodes a request body strictly: at most limit bytes, a
// single JSON object and nothing after it, no unknown fields. An empty (or
// all-whitespace) body yields the zero value. Any error means the request
// is bad (HTTP 400); the zero value is returned with it.
func DecodeRequest[T any](r io.Reader, limit int64) (T, error) {
	var zero T
	if limit <= 0 {
		return zero, fmt.Errorf("decode %T: limit %d must be positive", zero, limit)
	}
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return zero, fmt.Errorf("request body larger than %d bytes", limit)
		}
		return zero, fmt.Errorf("read request body: %w", err)
	}
	if int64(len(body)) > limit {
		return zero, fmt.Errorf("request body larger than %d bytes", limit)
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return zero, nil
	}
	if body[0] != '{' {
		return zero, fmt.Errorf("request body: want one JSON object, got %s", describeStart(body))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var v T
	if err := dec.Decode(&v); err != nil {
		return zero, fmt.Errorf("request body: %w", err)
	}
	if off := dec.InputOffset(); off != int64(len(body)) {
		return zero, fmt.Errorf("request body: unexpected data after the JSON object at offset %d", off)
	}
	return v, nil
}

// describeStart names what a body starts with, for error messages,
// without echoing much of it back.
func describeStart(b []byte) string {
	const n = 16
	if len(b) > n {
		return fmt.Sprintf("%q…", b[:n])
	}
	return fmt.Sprintf("%q", b)
}
