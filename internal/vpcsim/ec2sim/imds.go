package ec2sim

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IMDSv2 (token-required) as the instance that `identify` names.

const (
	imdsTokenHeader    = "X-Aws-Ec2-Metadata-Token"
	imdsTTLHeader      = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	imdsMaxTTL         = 21600
	imdsMaxLiveTokens  = 10000
	imdsTokenPath      = "/latest/api/token"
	imdsMetaDataPrefix = "/latest/meta-data/"
	imdsDynamicPrefix  = "/latest/dynamic/"
)

type imdsToken struct {
	instanceID string
	expires    time.Time
}

// tokenStore is IMDS's own state: its session tokens and each instance's
// Auto Scaling target lifecycle state (kept here, not on the instance,
// because only IMDS serves it).
type tokenStore struct {
	mu     sync.Mutex
	tokens map[string]imdsToken
	// lifecycle is the target lifecycle state set per instance; an
	// instance not in it is InService, one set to "" is in no Auto
	// Scaling group.
	lifecycle map[string]string
}

// Target lifecycle states IMDS serves at autoscaling/target-lifecycle-state:
// the steady states Amazon EC2 Auto Scaling moves an instance to.
const (
	LifecycleInService        = "InService"
	LifecycleTerminated       = "Terminated"
	LifecycleDetached         = "Detached"
	LifecycleStandby          = "Standby"
	LifecycleWarmedHibernated = "Warmed:Hibernated"
	LifecycleWarmedRunning    = "Warmed:Running"
	LifecycleWarmedStopped    = "Warmed:Stopped"
	LifecycleWarmedTerminated = "Warmed:Terminated"
)

var lifecycleStates = []string{LifecycleInService, LifecycleTerminated, LifecycleDetached, LifecycleStandby,
	LifecycleWarmedHibernated, LifecycleWarmedRunning, LifecycleWarmedStopped, LifecycleWarmedTerminated}

// SetTargetLifecycleState sets what IMDS serves the instance at
// meta-data/autoscaling/target-lifecycle-state, as Auto Scaling does when
// a transition starts (Terminated: a scale-in, its lifecycle hook
// running). Every instance starts InService; "" takes the item away, as
// for an instance in no Auto Scaling group.
func (m *Model) SetTargetLifecycleState(instanceID, state string) error {
	if state != "" && !slices.Contains(lifecycleStates, state) {
		return fmt.Errorf("set target lifecycle state of instance %q: unknown state %q (want one of %s)",
			instanceID, state, strings.Join(lifecycleStates, ", "))
	}
	m.mu.RLock()
	known := m.insts[instanceID] != nil
	m.mu.RUnlock()
	if !known {
		return fmt.Errorf("set target lifecycle state of instance %q: no such instance", instanceID)
	}
	m.tokens.mu.Lock()
	defer m.tokens.mu.Unlock()
	if m.tokens.lifecycle == nil {
		m.tokens.lifecycle = map[string]string{}
	}
	m.tokens.lifecycle[instanceID] = state
	return nil
}

// targetLifecycleState is what IMDS serves instanceID; ok is false when
// the instance is in no Auto Scaling group.
func (s *tokenStore) targetLifecycleState(instanceID string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	state, set := s.lifecycle[instanceID]
	if !set {
		return LifecycleInService, true
	}
	return state, state != ""
}

// issue returns a new token for instanceID valid for ttl.
func (s *tokenStore) issue(instanceID string, now time.Time, ttl time.Duration) string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.tokens {
		if !now.Before(t.expires) {
			delete(s.tokens, k)
		}
	}
	if len(s.tokens) >= imdsMaxLiveTokens { // bound memory: drop the one closest to expiry
		var victim string
		var soonest time.Time
		for k, t := range s.tokens {
			if victim == "" || t.expires.Before(soonest) {
				victim, soonest = k, t.expires
			}
		}
		delete(s.tokens, victim)
	}
	s.tokens[tok] = imdsToken{instanceID: instanceID, expires: now.Add(ttl)}
	return tok
}

// valid reports whether tok is live and was issued to instanceID.
func (s *tokenStore) valid(tok, instanceID string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	return ok && t.instanceID == instanceID && now.Before(t.expires)
}

// IMDSHandler serves IMDSv2 as the instance identify returns for each
// request (in the lab: by source address, via InstanceByPrivateIP).
func (m *Model) IMDSHandler(identify func(r *http.Request) (instanceID string, ok bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		instanceID, ok := identify(r)
		if !ok {
			m.log.Warn("ec2sim IMDS: caller is no instance", "remote", r.RemoteAddr, "path", r.URL.Path)
			imdsText(w, http.StatusForbidden, "Forbidden")
			return
		}
		if r.URL.Path == imdsTokenPath {
			m.imdsToken(w, r, instanceID)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			imdsText(w, http.StatusMethodNotAllowed, "Method Not Allowed")
			return
		}
		if !m.tokens.valid(r.Header.Get(imdsTokenHeader), instanceID, m.now()) {
			imdsText(w, http.StatusUnauthorized, "Unauthorized")
			return
		}
		tree, ok := m.imdsTree(instanceID)
		if !ok {
			imdsText(w, http.StatusNotFound, "Not Found")
			return
		}
		body, ok := tree.lookup(r.URL.Path)
		if !ok {
			imdsText(w, http.StatusNotFound, "Not Found")
			return
		}
		imdsText(w, http.StatusOK, body)
	})
}

func (m *Model) imdsToken(w http.ResponseWriter, r *http.Request, instanceID string) {
	if r.Method != http.MethodPut {
		w.Header().Set("Allow", "PUT")
		imdsText(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return
	}
	if r.Header.Get("X-Forwarded-For") != "" { // IMDS refuses proxied token requests
		imdsText(w, http.StatusForbidden, "Forbidden")
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get(imdsTTLHeader))
	if err != nil || ttl < 1 || ttl > imdsMaxTTL {
		imdsText(w, http.StatusBadRequest, "Bad Request")
		return
	}
	tok := m.tokens.issue(instanceID, m.now(), time.Duration(ttl)*time.Second)
	w.Header().Set(imdsTTLHeader, strconv.Itoa(ttl))
	imdsText(w, http.StatusOK, tok)
}

func imdsText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Server", "EC2ws")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// imdsFiles maps each leaf path (relative to /latest/) to its content;
// directories are derived from the leaves.
type imdsFiles map[string]string

// lookup answers a path: a leaf's content, or a directory listing (entries
// that are directories end with '/'), with or without the trailing slash.
func (f imdsFiles) lookup(path string) (string, bool) {
	rel, ok := strings.CutPrefix(path, "/latest/")
	if !ok {
		if path == "/latest" || path == "/" || path == "" {
			return "api/\ndynamic/\nmeta-data/", true
		}
		return "", false
	}
	if v, ok := f[rel]; ok && !strings.HasSuffix(path, "/") {
		return v, true
	}
	dir := strings.TrimSuffix(rel, "/")
	if dir != "" {
		dir += "/"
	}
	var entries []string
	for k := range f {
		rest, ok := strings.CutPrefix(k, dir)
		if !ok || rest == "" {
			continue
		}
		name, _, isDir := strings.Cut(rest, "/")
		if isDir {
			name += "/"
		}
		if !slices.Contains(entries, name) {
			entries = append(entries, name)
		}
	}
	if len(entries) == 0 {
		return "", false
	}
	slices.Sort(entries)
	return strings.Join(entries, "\n"), true
}

type identityDocument struct {
	AccountID               string   `json:"accountId"`
	Architecture            string   `json:"architecture"`
	AvailabilityZone        string   `json:"availabilityZone"`
	BillingProducts         []string `json:"billingProducts"`
	DevpayProductCodes      []string `json:"devpayProductCodes"`
	MarketplaceProductCodes []string `json:"marketplaceProductCodes"`
	ImageID                 string   `json:"imageId"`
	InstanceID              string   `json:"instanceId"`
	InstanceType            string   `json:"instanceType"`
	KernelID                *string  `json:"kernelId"`
	PendingTime             string   `json:"pendingTime"`
	PrivateIP               string   `json:"privateIp"`
	RamdiskID               *string  `json:"ramdiskId"`
	Region                  string   `json:"region"`
	Version                 string   `json:"version"`
}

// imdsTree builds the metadata an instance sees, from the model as it is now.
func (m *Model) imdsTree(instanceID string) (imdsFiles, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	in := m.insts[instanceID]
	if in == nil {
		return nil, false
	}
	f := imdsFiles{}
	md := func(k, v string) { f["meta-data/"+k] = v }
	md("instance-id", in.id)
	md("ami-id", in.imageID)
	md("instance-type", "t3.micro")
	md("placement/availability-zone", in.az)
	md("placement/region", m.region)
	md("services/domain", "amazonaws.com")
	md("services/partition", "aws")
	if state, ok := m.tokens.targetLifecycleState(in.id); ok {
		md("autoscaling/target-lifecycle-state", state)
	}

	var primaryIP netip.Addr
	for _, id := range in.enis {
		e := m.enis[id]
		mac := e.mac.String()
		base := "network/interfaces/macs/" + mac + "/"
		md(base+"mac", mac)
		md(base+"interface-id", e.id)
		md(base+"device-number", strconv.Itoa(e.deviceIndex))
		md(base+"owner-id", m.account)
		md(base+"subnet-id", e.subnetID)
		md(base+"vpc-id", e.vpcID)
		md(base+"local-hostname", m.privateDNS(e.primary))
		if s := m.subnets[e.subnetID]; s != nil {
			md(base+"subnet-ipv4-cidr-block", s.cidr.String())
		}
		if v := m.vpcs[e.vpcID]; v != nil {
			md(base+"vpc-ipv4-cidr-block", v.cidr.String())
			md(base+"vpc-ipv4-cidr-blocks", v.cidr.String())
		}
		var locals, publics []string
		for _, ip := range e.ips() {
			locals = append(locals, ip.String())
			if a := m.eipOnLocked(e.id, ip); a != nil {
				publics = append(publics, a.public.String())
				md(base+"ipv4-associations/"+a.public.String(), ip.String())
			}
		}
		md(base+"local-ipv4s", strings.Join(locals, "\n"))
		if len(publics) > 0 {
			md(base+"public-ipv4s", strings.Join(publics, "\n"))
			md(base+"public-hostname", m.publicDNS(netip.MustParseAddr(publics[0])))
		}
		if e.deviceIndex == 0 {
			primaryIP = e.primary
			md("mac", mac)
			md("local-ipv4", e.primary.String())
			md("local-hostname", m.privateDNS(e.primary))
			md("hostname", m.privateDNS(e.primary))
			if a := m.eipOnLocked(e.id, e.primary); a != nil {
				md("public-ipv4", a.public.String())
				md("public-hostname", m.publicDNS(a.public))
			}
		}
	}
	doc := identityDocument{AccountID: m.account, Architecture: "x86_64", AvailabilityZone: in.az,
		ImageID: in.imageID, InstanceID: in.id, InstanceType: "t3.micro",
		PendingTime: in.launched.UTC().Format(time.RFC3339), Region: m.region, Version: "2017-09-30"}
	if primaryIP.IsValid() {
		doc.PrivateIP = primaryIP.String()
	}
	b, _ := json.MarshalIndent(doc, "", "  ") // plain struct: cannot fail
	f["dynamic/instance-identity/document"] = string(b)
	return f, true
}
