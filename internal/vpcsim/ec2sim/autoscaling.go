package ec2sim

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The Amazon EC2 Auto Scaling Query API (awsquery, version 2011-01-01)
// as far as a fleet member needs it: its group, the group's lifecycle
// hooks and the completion of its scale-in lifecycle action. Groups and
// scale-ins are set up through the model (CreateAutoScalingGroup,
// ScaleIn), as the console or a scaling policy would.

// AutoScalingAPIVersion is the only Auto Scaling API version served.
const AutoScalingAPIVersion = "2011-01-01"

const autoScalingNamespace = "http://autoscaling.amazonaws.com/doc/2011-01-01/"

// Auto Scaling's lifecycle states of an instance in its group, and the
// transitions and results of a lifecycle hook.
const (
	ASGInService          = "InService"
	ASGTerminating        = "Terminating"
	ASGTerminatingWait    = "Terminating:Wait"
	ASGTerminatingProceed = "Terminating:Proceed"
	TransitionTerminating = "autoscaling:EC2_INSTANCE_TERMINATING"
	TransitionLaunching   = "autoscaling:EC2_INSTANCE_LAUNCHING"
	ResultContinue        = "CONTINUE"
	ResultAbandon         = "ABANDON"
)

// LifecycleHook is one lifecycle hook of a group.
type LifecycleHook struct {
	Name             string
	Transition       string // TransitionTerminating or TransitionLaunching
	HeartbeatTimeout time.Duration
	DefaultResult    string // ResultContinue (default) or ResultAbandon
}

// CompletedAction is one lifecycle action completed through the API.
type CompletedAction struct {
	Group, Hook, InstanceID, Result string
	At                              time.Time
}

type asGroup struct {
	name  string
	hooks []LifecycleHook
	insts []string
}

type asInstance struct {
	group string
	state string
	// waiting are the terminating hooks whose action is still open.
	waiting []string
}

// autoScalingState is the Auto Scaling side of the model, under its own
// lock (never held with the model's).
type autoScalingState struct {
	mu        sync.Mutex
	groups    map[string]*asGroup
	insts     map[string]*asInstance
	completed []CompletedAction
}

// maxCompleted bounds the completions remembered.
const maxCompleted = 1024

// CreateAutoScalingGroup makes group name of instanceIDs (each InService,
// in one group only) with hooks.
func (m *Model) CreateAutoScalingGroup(name string, instanceIDs []string, hooks []LifecycleHook) error {
	if name == "" {
		return fmt.Errorf("create Auto Scaling group: empty name")
	}
	m.mu.RLock()
	for _, id := range instanceIDs {
		if m.insts[id] == nil {
			m.mu.RUnlock()
			return fmt.Errorf("create Auto Scaling group %q: no instance %q", name, id)
		}
	}
	m.mu.RUnlock()
	for i, h := range hooks {
		if h.Name == "" || (h.Transition != TransitionTerminating && h.Transition != TransitionLaunching) {
			return fmt.Errorf("create Auto Scaling group %q: hook %d: want a name and a transition, got %+v", name, i, h)
		}
		if h.DefaultResult == "" {
			hooks[i].DefaultResult = ResultContinue
		}
	}
	s := &m.scaling
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groups == nil {
		s.groups, s.insts = map[string]*asGroup{}, map[string]*asInstance{}
	}
	if s.groups[name] != nil {
		return fmt.Errorf("create Auto Scaling group %q: AlreadyExists", name)
	}
	for _, id := range instanceIDs {
		if in := s.insts[id]; in != nil {
			return fmt.Errorf("create Auto Scaling group %q: instance %s is in group %q already", name, id, in.group)
		}
	}
	s.groups[name] = &asGroup{name: name, hooks: slices.Clone(hooks), insts: slices.Clone(instanceIDs)}
	for _, id := range instanceIDs {
		s.insts[id] = &asInstance{group: name, state: ASGInService}
	}
	return nil
}

// ScaleIn starts the termination of instanceID as a scale-in does: with
// a terminating hook the instance waits in Terminating:Wait (IMDS's
// target lifecycle state becomes Terminated), without one it goes on
// (Terminating:Proceed).
func (m *Model) ScaleIn(instanceID string) error {
	s := &m.scaling
	s.mu.Lock()
	in := s.insts[instanceID]
	if in == nil || in.state != ASGInService {
		s.mu.Unlock()
		return fmt.Errorf("scale in %s: not an InService instance of an Auto Scaling group", instanceID)
	}
	in.waiting = nil
	for _, h := range s.groups[in.group].hooks {
		if h.Transition == TransitionTerminating {
			in.waiting = append(in.waiting, h.Name)
		}
	}
	in.state = ASGTerminatingProceed
	if len(in.waiting) > 0 {
		in.state = ASGTerminatingWait
	}
	s.mu.Unlock()
	return m.SetTargetLifecycleState(instanceID, LifecycleTerminated)
}

// AutoScalingState is instanceID's lifecycle state in its group ("" when
// in none).
func (m *Model) AutoScalingState(instanceID string) string {
	s := &m.scaling
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.insts[instanceID]; in != nil {
		return in.state
	}
	return ""
}

// CompletedLifecycleActions are the lifecycle actions completed through
// the API, oldest first.
func (m *Model) CompletedLifecycleActions() []CompletedAction {
	s := &m.scaling
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.completed)
}

type autoScalingFunc func(m *Model, p params) (any, *APIError)

var autoScalingActions = map[string]autoScalingFunc{
	"DescribeAutoScalingInstances": (*Model).describeAutoScalingInstances,
	"DescribeLifecycleHooks":       (*Model).describeLifecycleHooks,
	"CompleteLifecycleAction":      (*Model).completeLifecycleAction,
}

func errValidation(format string, args ...any) *APIError {
	return apiErr(http.StatusBadRequest, "ValidationError", format, args...)
}

// requiredAS is a required parameter as Auto Scaling refuses its absence.
func requiredAS(p params, name string) (string, *APIError) {
	v := p.str(name)
	if v == "" {
		return "", errValidation("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null",
			lowerFirst(name))
	}
	return v, nil
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]|0x20) + s[1:]
}

type xASInstance struct {
	InstanceID           string `xml:"InstanceId"`
	AutoScalingGroupName string `xml:"AutoScalingGroupName"`
	AvailabilityZone     string `xml:"AvailabilityZone"`
	LifecycleState       string `xml:"LifecycleState"`
	HealthStatus         string `xml:"HealthStatus"`
	ProtectedFromScaleIn bool   `xml:"ProtectedFromScaleIn"`
}

type xDescribeASInstances struct {
	AutoScalingInstances []xASInstance `xml:"AutoScalingInstances>member"`
}

func (m *Model) describeAutoScalingInstances(p params) (any, *APIError) {
	ids, aerr := p.list("InstanceIds.member")
	if aerr != nil {
		return nil, aerr
	}
	if v := p.str("MaxRecords"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 50 {
			return nil, errValidation("MaxRecords %q: must be between 1 and 50", v)
		}
	}
	azs := map[string]string{}
	m.mu.RLock()
	for id, in := range m.insts {
		azs[id] = in.az
	}
	m.mu.RUnlock()
	s := &m.scaling
	s.mu.Lock()
	defer s.mu.Unlock()
	out := xDescribeASInstances{AutoScalingInstances: []xASInstance{}}
	for id, in := range s.insts {
		if len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		out.AutoScalingInstances = append(out.AutoScalingInstances, xASInstance{InstanceID: id, AutoScalingGroupName: in.group,
			AvailabilityZone: azs[id], LifecycleState: in.state, HealthStatus: "HEALTHY"})
	}
	slices.SortFunc(out.AutoScalingInstances, func(a, b xASInstance) int { return cmp.Compare(a.InstanceID, b.InstanceID) })
	return out, nil
}

type xLifecycleHook struct {
	LifecycleHookName    string `xml:"LifecycleHookName"`
	AutoScalingGroupName string `xml:"AutoScalingGroupName"`
	LifecycleTransition  string `xml:"LifecycleTransition"`
	HeartbeatTimeout     int    `xml:"HeartbeatTimeout"`
	GlobalTimeout        int    `xml:"GlobalTimeout"`
	DefaultResult        string `xml:"DefaultResult"`
}

type xDescribeLifecycleHooks struct {
	LifecycleHooks []xLifecycleHook `xml:"LifecycleHooks>member"`
}

func (m *Model) describeLifecycleHooks(p params) (any, *APIError) {
	group, aerr := requiredAS(p, "AutoScalingGroupName")
	if aerr != nil {
		return nil, aerr
	}
	names, aerr := p.list("LifecycleHookNames.member")
	if aerr != nil {
		return nil, aerr
	}
	s := &m.scaling
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[group]
	if g == nil {
		return nil, errValidation("Group %s not found", group)
	}
	out := xDescribeLifecycleHooks{LifecycleHooks: []xLifecycleHook{}}
	for _, h := range g.hooks {
		if len(names) > 0 && !slices.Contains(names, h.Name) {
			continue
		}
		hb := int(h.HeartbeatTimeout / time.Second)
		out.LifecycleHooks = append(out.LifecycleHooks, xLifecycleHook{LifecycleHookName: h.Name, AutoScalingGroupName: group,
			LifecycleTransition: h.Transition, HeartbeatTimeout: hb, GlobalTimeout: min(100*hb, 172800), DefaultResult: h.DefaultResult})
	}
	return out, nil
}

type xEmpty struct{}

func (m *Model) completeLifecycleAction(p params) (any, *APIError) {
	var v [3]string
	for i, name := range []string{"AutoScalingGroupName", "LifecycleHookName", "LifecycleActionResult"} {
		var aerr *APIError
		if v[i], aerr = requiredAS(p, name); aerr != nil {
			return nil, aerr
		}
	}
	group, hook, result := v[0], v[1], v[2]
	if result != ResultContinue && result != ResultAbandon {
		return nil, errValidation("LifecycleActionResult %s is not valid: want %s or %s", result, ResultContinue, ResultAbandon)
	}
	id := p.str("InstanceId")
	if id == "" {
		// A token names the action Auto Scaling sent a notification
		// for; the lab sends none.
		if tok := p.str("LifecycleActionToken"); tok != "" {
			return nil, errValidation("No active Lifecycle Action found with token %s", tok)
		}
		return nil, errValidation("Either InstanceId or LifecycleActionToken must be specified")
	}
	s := &m.scaling
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[group]
	if g == nil || !slices.ContainsFunc(g.hooks, func(h LifecycleHook) bool { return h.Name == hook }) {
		return nil, errValidation("No Lifecycle Hook found with name %s for group %s", hook, group)
	}
	in := s.insts[id]
	if in == nil || in.group != group || !slices.Contains(in.waiting, hook) {
		return nil, errValidation("No active Lifecycle Action found with instance ID %s", id)
	}
	in.waiting = slices.DeleteFunc(in.waiting, func(h string) bool { return h == hook })
	if len(in.waiting) == 0 {
		in.state = ASGTerminatingProceed
	}
	if len(s.completed) >= maxCompleted {
		s.completed = s.completed[1:]
	}
	s.completed = append(s.completed, CompletedAction{Group: group, Hook: hook, InstanceID: id, Result: result, At: m.now()})
	m.log.Info("ec2sim Auto Scaling lifecycle action completed", "group", group, "hook", hook, "instance", id, "result", result, "state", in.state)
	return xEmpty{}, nil
}

type autoScalingHandler struct {
	m     *Model
	creds Credentials
}

// AutoScalingHandler serves the Auto Scaling Query API over the model:
// form-encoded POST (or GET), SigV4 for service "autoscaling", XML in
// AWS's 2011-01-01 namespace, errors as <ErrorResponse><Error>.
func (m *Model) AutoScalingHandler(creds Credentials) http.Handler {
	return &autoScalingHandler{m: m, creds: creds}
}

type xASResponseMetadata struct {
	RequestID string `xml:"RequestId"`
}

type xASErrorResponse struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

func (h *autoScalingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := newRequestID()
	action := "-"
	fail := func(e *APIError) {
		h.m.stats.add(func(st *Stats, _ map[string]int) { st.Errors++ })
		h.m.log.Debug("ec2sim Auto Scaling refused", "action", action, "code", e.Code, "err", e.Message)
		x := xASErrorResponse{Xmlns: autoScalingNamespace, RequestID: reqID}
		x.Error.Type, x.Error.Code, x.Error.Message = "Sender", e.Code, e.Message
		if e.Status >= 500 {
			x.Error.Type = "Receiver"
		}
		out, err := xml.Marshal(x)
		if err != nil {
			out = []byte("<ErrorResponse><Error><Code>InternalFailure</Code></Error></ErrorResponse>")
		}
		writeBody(w, e.Status, "text/xml", reqID, append([]byte(xml.Header), out...))
	}
	h.m.stats.add(func(st *Stats, _ map[string]int) { st.Requests++ })
	p, body, aerr := readQueryRequest(w, r)
	if aerr != nil {
		fail(aerr)
		return
	}
	if aerr := verifySigV4(r, body, h.creds, "autoscaling", h.m.region, h.m.now()); aerr != nil {
		// Auto Scaling's code for a bad signature.
		aerr.Code = "SignatureDoesNotMatch"
		if aerr.Status == http.StatusUnauthorized {
			aerr.Status = http.StatusForbidden
		}
		fail(aerr)
		return
	}
	action = p.str("Action")
	fn, ok := autoScalingActions[action]
	if !ok {
		fail(apiErr(http.StatusBadRequest, "InvalidAction", "The action %s is not valid for this web service.", action))
		return
	}
	if v := p.str("Version"); v != AutoScalingAPIVersion {
		fail(apiErr(http.StatusBadRequest, "InvalidParameterValue", "Version %q is not supported; the simulator speaks %s", v, AutoScalingAPIVersion))
		return
	}
	h.m.stats.add(func(_ *Stats, by map[string]int) { by[action]++ })
	result, aerr := fn(h.m, p)
	if aerr != nil {
		fail(aerr)
		return
	}
	if err := writeASResponse(w, action, reqID, result); err != nil {
		fail(errInternal("encoding the response: %v", err))
	}
}

// writeASResponse writes <ActionResponse xmlns><ActionResult>…
// </ActionResult><ResponseMetadata>… as awsquery does.
func writeASResponse(w http.ResponseWriter, action, requestID string, result any) error {
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	start := xml.StartElement{Name: xml.Name{Local: action + "Response"}, Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: autoScalingNamespace}}}
	if err := enc.EncodeToken(start); err != nil {
		return err
	}
	if err := enc.EncodeElement(result, xml.StartElement{Name: xml.Name{Local: action + "Result"}}); err != nil {
		return err
	}
	if err := enc.EncodeElement(xASResponseMetadata{RequestID: requestID}, xml.StartElement{Name: xml.Name{Local: "ResponseMetadata"}}); err != nil {
		return err
	}
	if err := enc.EncodeToken(start.End()); err != nil {
		return err
	}
	if err := enc.Flush(); err != nil {
		return err
	}
	writeBody(w, http.StatusOK, "text/xml", requestID, buf.Bytes())
	return nil
}
