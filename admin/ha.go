package admin

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// HABackend is implemented by a Backend that runs the HA pair. The HA
// routes answer 501 when the backend does not implement it.
type HABackend interface {
	// Failover hands route tables (all this node owns when empty) to the
	// healthy peer.
	Failover(ctx context.Context, req HARequest) (HAResponse, error)
	// Takeover asks the peer for route tables (all when empty).
	Takeover(ctx context.Context, req HARequest) (HAResponse, error)
	// Maintenance gives every table away and stays backup (on), or ends
	// that (off).
	Maintenance(ctx context.Context, req MaintenanceRequest) (HAResponse, error)
}

// HAStatus is the HA pair as this node sees it (Status.HA).
type HAStatus struct {
	// Enabled: hanatd manages route tables. Mode is "pair" or "single".
	Enabled     bool   `json:"enabled"`
	Mode        string `json:"mode"`
	NodeID      string `json:"node_id"`
	ENI         string `json:"eni"`
	Healthy     bool   `json:"healthy"`
	HealthNote  string `json:"health_note,omitempty"`
	Maintenance bool   `json:"maintenance"`
	Preempt     bool   `json:"preempt"`
	// HoldDown, Interval and DeadAfter as durations ("30s").
	HoldDown  string `json:"hold_down"`
	Interval  string `json:"interval"`
	DeadAfter string `json:"dead_after"`
	Peer      HAPeer `json:"peer"`
	// Tables are the route tables of the pair.
	Tables []HATable `json:"tables"`
	// EIPs follow their route tables.
	EIPs []HAEIP `json:"eips,omitempty"`
	// Sync is the state sync with the peer (hitless failover).
	Sync *HASync `json:"sync,omitempty"`
	// Counters: claims, releases, route_writes, route_write_errors,
	// eip_associations, heartbeats_sent, heartbeats_accepted,
	// heartbeats_lost and heartbeats_dropped_<reason>.
	Counters    map[string]uint64 `json:"counters"`
	LastError   string            `json:"last_error,omitempty"`
	LastErrorAt time.Time         `json:"last_error_at,omitzero"`
	Message     string            `json:"message,omitempty"`
}

// HASync is the pair's state sync: this node's flows streamed to the
// peer (Sent), the peer's held here for a takeover (Held).
type HASync struct {
	Enabled bool   `json:"enabled"`
	Message string `json:"message,omitempty"` // why it is off
	// Standby is the secondary private IP that carries the peer's EIP
	// when this node serves the peer's zone.
	Standby string       `json:"standby,omitempty"`
	Sent    HASyncStream `json:"sent"`
	Held    HASyncStream `json:"held"`
	// LastTakeover is the last injection of held flows before the routes
	// moved here.
	LastTakeover *HATakeover `json:"last_takeover,omitempty"`
}

// HASyncStream is one direction of the sync.
type HASyncStream struct {
	Connected      bool              `json:"connected"`
	Flows          int               `json:"flows"`
	LagMS          int64             `json:"lag_ms"`
	LastFullSyncAt time.Time         `json:"last_full_sync_at,omitzero"`
	Snapshots      uint64            `json:"snapshots"`
	Errors         map[string]uint64 `json:"errors,omitempty"` // by reason, non-zero only
}

// HATakeover is one injection of the peer's flows.
type HATakeover struct {
	At       time.Time `json:"at"`
	Tables   []string  `json:"tables"`
	Injected int       `json:"injected"`
	Existed  int       `json:"existed"`
	Refused  int       `json:"refused"`
	Failed   int       `json:"failed"`
	TookMS   int64     `json:"took_ms"`
	Error    string    `json:"error,omitempty"`
}

// HAPeer is the other node of the pair.
type HAPeer struct {
	Address     string `json:"address,omitempty"`
	NodeID      string `json:"node_id,omitempty"`
	ENI         string `json:"eni,omitempty"`
	State       string `json:"state"` // alive, dead, never heard, none
	Detail      string `json:"detail,omitempty"`
	Healthy     bool   `json:"healthy"`
	Maintenance bool   `json:"maintenance"`
	// HeartbeatAgeMS is the age of the last accepted heartbeat (-1: none).
	HeartbeatAgeMS int64 `json:"heartbeat_age_ms"`
	// Loss is the fraction of the peer's heartbeats that did not arrive
	// (sequence gaps).
	Loss float64 `json:"loss"`
}

// HATable is one route table of the pair.
type HATable struct {
	ID   string `json:"id"`
	Home bool   `json:"home"` // this node's own table
	// Owner is where its 0.0.0.0/0 points (an ENI, "" none), OwnerNode
	// "self", "peer" or "other".
	Owner     string `json:"owner"`
	OwnerNode string `json:"owner_node"`
	Blackhole bool   `json:"blackhole,omitempty"`
	// Desired is who should own it: "self", "peer" or "none".
	Desired string `json:"desired"`
	// Claim is this node's claim: "held", "taking" or "none".
	Claim      string    `json:"claim"`
	LastChange time.Time `json:"last_change,omitzero"`
	// LastReason says why it last changed on this node.
	LastReason string `json:"last_reason,omitempty"`
	Changes    uint64 `json:"changes"`
}

// HAEIP is an Elastic IP that follows route tables.
type HAEIP struct {
	AllocationID string   `json:"allocation_id"`
	RouteTables  []string `json:"route_tables"`
	ENI          string   `json:"eni,omitempty"`
	// Address is the private IP of this node's ENI that carries it (its
	// primary IP or its standby address); "" when it is not here.
	Address string `json:"address,omitempty"`
}

// HARequest is the body of POST /v1/failover and /v1/takeover. Empty
// Tables means all.
type HARequest struct {
	Tables []string `json:"tables,omitempty"`
}

// MaintenanceRequest is the body of POST /v1/maintenance.
type MaintenanceRequest struct {
	On bool `json:"on"`
}

// HAResponse answers the HA writes.
type HAResponse struct {
	Tables  []string `json:"tables"`
	Message string   `json:"message"`
}

func (s *Server) haRoutes() map[string]route {
	return map[string]route{
		"/v1/failover":    {method: http.MethodPost, write: true, serve: s.serveFailover},
		"/v1/takeover":    {method: http.MethodPost, write: true, serve: s.serveTakeover},
		"/v1/maintenance": {method: http.MethodPost, write: true, serve: s.serveMaintenance},
	}
}

func (s *Server) haBackend(w http.ResponseWriter) (HABackend, bool) {
	hb, ok := s.b.(HABackend)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this hanatd does not run the HA pair")
	}
	return hb, ok
}

func (s *Server) serveFailover(w http.ResponseWriter, r *http.Request) {
	s.serveHA(w, r, "failover", func(ctx context.Context, hb HABackend, req HARequest) (HAResponse, error) {
		return hb.Failover(ctx, req)
	})
}

func (s *Server) serveTakeover(w http.ResponseWriter, r *http.Request) {
	s.serveHA(w, r, "takeover", func(ctx context.Context, hb HABackend, req HARequest) (HAResponse, error) {
		return hb.Takeover(ctx, req)
	})
}

func (s *Server) serveHA(w http.ResponseWriter, r *http.Request, what string, call func(context.Context, HABackend, HARequest) (HAResponse, error)) {
	hb, ok := s.haBackend(w)
	if !ok {
		return
	}
	req, err := DecodeRequest[HARequest](r.Body, MaxRequestBody)
	if err != nil {
		writeError(w, http.StatusBadRequest, what+": "+err.Error())
		return
	}
	if len(req.Tables) > 64 {
		writeError(w, http.StatusBadRequest, what+": too many tables")
		return
	}
	resp, err := call(r.Context(), hb, req)
	if err != nil {
		s.haError(w, r, err)
		return
	}
	if resp.Tables == nil {
		resp.Tables = []string{}
	}
	s.log.Info("admin "+what, "tables", resp.Tables, "message", resp.Message)
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) serveMaintenance(w http.ResponseWriter, r *http.Request) {
	hb, ok := s.haBackend(w)
	if !ok {
		return
	}
	req, err := DecodeRequest[MaintenanceRequest](r.Body, MaxRequestBody)
	if err != nil {
		writeError(w, http.StatusBadRequest, "maintenance: "+err.Error())
		return
	}
	resp, err := hb.Maintenance(r.Context(), req)
	if err != nil {
		s.haError(w, r, err)
		return
	}
	if resp.Tables == nil {
		resp.Tables = []string{}
	}
	s.log.Info("admin maintenance", "on", req.On, "message", resp.Message)
	writeJSON(w, http.StatusOK, resp)
}

// ErrConflict marks an HA command refused in the current state (peer not
// healthy, unknown table…): 409, not a server failure.
var ErrConflict = errors.New("refused in the current state")

func (s *Server) haError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, ErrConflict) {
		s.log.Warn("admin request refused", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	s.backendError(w, r, err)
}

// Failover hands route tables to the peer (POST /v1/failover).
func (c *Client) Failover(ctx context.Context, req HARequest) (HAResponse, error) {
	return postJSON[HAResponse](ctx, c, "/v1/failover", req)
}

// Takeover asks the peer for route tables (POST /v1/takeover).
func (c *Client) Takeover(ctx context.Context, req HARequest) (HAResponse, error) {
	return postJSON[HAResponse](ctx, c, "/v1/takeover", req)
}

// Maintenance turns maintenance on or off (POST /v1/maintenance).
func (c *Client) Maintenance(ctx context.Context, req MaintenanceRequest) (HAResponse, error) {
	return postJSON[HAResponse](ctx, c, "/v1/maintenance", req)
}

func postJSON[T any](ctx context.Context, c *Client, path string, body any) (T, error) {
	raw, err := c.Raw(ctx, http.MethodPost, path, body)
	if err != nil {
		var zero T
		return zero, err
	}
	return decodeResponse[T](raw, path)
}
