package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ErrForbidden is matched (errors.Is) by the error of any call hanatd
// refused with 403: the caller is neither root nor in the admin group.
var ErrForbidden = errors.New("permission denied")

// APIError is a non-2xx answer from hanatd. A 403 also matches
// [ErrForbidden] with errors.Is.
type APIError struct {
	StatusCode int
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("hanatd: %s (HTTP %d)", e.Message, e.StatusCode)
}

// Is reports whether target is ErrForbidden and e is a 403.
func (e *APIError) Is(target error) bool {
	return target == ErrForbidden && e.StatusCode == http.StatusForbidden
}

// maxResponseBody bounds what the client reads from the daemon.
const maxResponseBody = 256 << 20

// Client talks to hanatd's admin socket. It is safe for concurrent use.
// Bound every call with the context.
type Client struct {
	socketPath string
	hc         *http.Client
}

// NewClient returns a client for the socket at socketPath (empty means
// [DefaultSocketPath]). Nothing is dialled until the first call.
func NewClient(socketPath string) *Client {
	if socketPath == "" {
		socketPath = DefaultSocketPath
	}
	c := &Client{socketPath: socketPath}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext:        c.dial,
		DisableCompression: true,
		MaxIdleConns:       2,
	}}
	return c
}

// SocketPath is the socket the client dials.
func (c *Client) SocketPath() string { return c.socketPath }

// dialError is a failure to reach the socket at all.
type dialError struct {
	path string
	err  error
}

func (e *dialError) Error() string {
	if errors.Is(e.err, fs.ErrPermission) {
		return fmt.Sprintf("dial %s: %v (the admin socket is for root and the admin group, %q by default)", e.path, e.err, DefaultGroup)
	}
	return fmt.Sprintf("hanatd not running? dial %s: %v", e.path, e.err)
}

func (e *dialError) Unwrap() error { return e.err }

func (c *Client) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socketPath)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			err = oe.Err // drop "dial unix PATH:", the message names the path already
		}
		return nil, &dialError{path: c.socketPath, err: err}
	}
	return conn, nil
}

// Status returns GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	return getJSON[Status](ctx, c, "/v1/status")
}

// Flows returns GET /v1/flows filtered by q.
func (c *Client) Flows(ctx context.Context, q FlowsQuery) (FlowsResponse, error) {
	return getJSON[FlowsResponse](ctx, c, FlowsPath(q))
}

// Config returns the daemon's effective configuration (GET /v1/config).
func (c *Client) Config(ctx context.Context) (json.RawMessage, error) {
	return c.Raw(ctx, http.MethodGet, "/v1/config", nil)
}

// Doctor runs the troubleshooting checklist (GET /v1/doctor).
func (c *Client) Doctor(ctx context.Context) (DoctorReport, error) {
	return getJSON[DoctorReport](ctx, c, "/v1/doctor")
}

// Reload asks the daemon to reread its configuration and reconcile
// (POST /v1/reload). It needs root or the admin group.
func (c *Client) Reload(ctx context.Context, req ReloadRequest) (ReloadResponse, error) {
	raw, err := c.Raw(ctx, http.MethodPost, "/v1/reload", req)
	if err != nil {
		return ReloadResponse{}, err
	}
	return decodeResponse[ReloadResponse](raw, "/v1/reload")
}

// FlowsPath is the request path (with query) for q.
func FlowsPath(q FlowsQuery) string {
	v := url.Values{}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Protocol != "" {
		v.Set("protocol", q.Protocol)
	}
	if q.Src != "" {
		v.Set("src", q.Src)
	}
	if len(v) == 0 {
		return "/v1/flows"
	}
	return "/v1/flows?" + v.Encode()
}

// Raw makes one request and returns the response body of a 2xx answer as
// it came (for `hanatctl --json`). body, if not nil, is sent as JSON.
// path includes the version and any query, e.g. "/v1/status".
func (c *Client) Raw(ctx context.Context, method, path string, body any) (json.RawMessage, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s request: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://hanatd"+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		var de *dialError
		if errors.As(err, &de) {
			return nil, de
		}
		return nil, fmt.Errorf("%s %s on %s: %w", method, path, c.socketPath, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if len(data) > maxResponseBody {
		return nil, fmt.Errorf("%s %s: response larger than %d bytes", method, path, maxResponseBody)
	}
	v := resp.Header.Get(VersionHeader)
	if v == "" {
		return nil, fmt.Errorf("%s %s: %s answered without a %s header: not a hanatd admin socket? (HTTP %d)", method, path, c.socketPath, VersionHeader, resp.StatusCode)
	}
	if v != APIVersion && resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: hanatd speaks admin API version %s, this client speaks %s (HTTP %d: %s)", method, path, v, APIVersion, resp.StatusCode, errorMessage(data))
	}
	if resp.StatusCode/100 != 2 {
		return nil, &APIError{StatusCode: resp.StatusCode, Message: errorMessage(data)}
	}
	return json.RawMessage(data), nil
}

// errorMessage extracts ErrorResponse.Error, or the body's text.
func errorMessage(body []byte) string {
	var e ErrorResponse
	if err := json.Unmarshal(body, &e); err == nil && e.Error != "" {
		return e.Error
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 512 {
		s = s[:512] + "…"
	}
	if s == "" {
		s = "(empty response)"
	}
	return s
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func getJSON[T any](ctx context.Context, c *Client, path string) (T, error) {
	raw, err := c.Raw(ctx, http.MethodGet, path, nil)
	if err != nil {
		var zero T
		return zero, err
	}
	return decodeResponse[T](raw, path)
}

func decodeResponse[T any](raw []byte, path string) (T, error) {
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("decode %s response: %w", path, err)
	}
	return v, nil
}
