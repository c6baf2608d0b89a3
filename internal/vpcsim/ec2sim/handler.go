package ec2sim

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"time"
)

// APIVersion is the only EC2 API version the handler speaks.
const APIVersion = "2016-11-15"

type actionFunc func(m *Model, ctx context.Context, p params) (response, *APIError)

var actions = map[string]actionFunc{
	"DescribeInstances":               (*Model).describeInstances,
	"DescribeNetworkInterfaces":       (*Model).describeNetworkInterfaces,
	"DescribeSubnets":                 (*Model).describeSubnets,
	"DescribeVpcs":                    (*Model).describeVpcs,
	"DescribeInternetGateways":        (*Model).describeInternetGateways,
	"DescribeRouteTables":             (*Model).describeRouteTables,
	"DescribeAddresses":               (*Model).describeAddresses,
	"DescribeTags":                    (*Model).describeTags,
	"DescribeVpcEndpoints":            (*Model).describeVpcEndpoints,
	"ModifyNetworkInterfaceAttribute": (*Model).modifyNetworkInterfaceAttribute,
	"ModifyInstanceAttribute":         (*Model).modifyInstanceAttribute,
	"CreateRoute":                     (*Model).createRoute,
	"ReplaceRoute":                    (*Model).replaceRoute,
	"DeleteRoute":                     (*Model).deleteRoute,
	"AssociateAddress":                (*Model).associateAddress,
	"DisassociateAddress":             (*Model).disassociateAddress,
	"AssignPrivateIpAddresses":        (*Model).assignPrivateIPAddresses,
	"UnassignPrivateIpAddresses":      (*Model).unassignPrivateIPAddresses,
	"CreateTags":                      (*Model).createTags,
	"DeleteTags":                      (*Model).deleteTags,
}

// Actions lists the EC2 actions the handler implements, sorted.
func Actions() []string {
	out := make([]string, 0, len(actions))
	for a := range actions {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

type ec2Handler struct {
	m     *Model
	creds Credentials
}

// EC2Handler serves the EC2 Query API over the model: form-encoded POST (or
// GET with a query string), SigV4 verified against creds for the model's
// region and service "ec2".
func (m *Model) EC2Handler(creds Credentials) http.Handler {
	return &ec2Handler{m: m, creds: creds}
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (h *ec2Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := newRequestID()
	action := "-"
	status := http.StatusOK
	defer func() {
		h.m.log.Debug("ec2sim request", "action", action, "status", status, "request_id", reqID,
			"remote", r.RemoteAddr, "duration", time.Since(start))
	}()
	h.m.stats.add(func(st *Stats, _ map[string]int) { st.Requests++ })
	fail := func(e *APIError) {
		status = e.Status
		h.m.stats.add(func(st *Stats, _ map[string]int) {
			st.Errors++
			switch e.Code {
			case "AuthFailure":
				st.AuthFailures++
			}
		})
		writeError(w, reqID, e)
	}

	p, body, aerr := readQueryRequest(w, r)
	if aerr != nil {
		fail(aerr)
		return
	}
	if aerr := verifySigV4(r, body, h.creds, "ec2", h.m.region, h.m.now()); aerr != nil {
		h.m.log.Warn("ec2sim request refused", "code", aerr.Code, "reason", aerr.Message, "remote", r.RemoteAddr)
		fail(aerr)
		return
	}
	action = p.str("Action")
	if action == "" {
		fail(apiErr(http.StatusBadRequest, "MissingAction", "The request must contain the parameter Action"))
		return
	}
	fn, ok := actions[action]
	if !ok {
		fail(apiErr(http.StatusBadRequest, "InvalidAction", "The action %s is not valid for this web service.", action))
		return
	}
	h.m.stats.add(func(_ *Stats, by map[string]int) { by[action]++ })
	switch v := p.str("Version"); v {
	case APIVersion:
	case "":
		fail(errMissing("Version"))
		return
	default:
		fail(apiErr(http.StatusBadRequest, "InvalidParameterValue", "Version %s is not supported; the simulator speaks %s", v, APIVersion))
		return
	}
	if aerr := h.m.faults.inject(r.Context(), action); aerr != nil {
		h.m.stats.add(func(st *Stats, _ map[string]int) {
			switch aerr.Code {
			case "RequestLimitExceeded":
				st.Throttled++
			case "InternalError":
				st.InjectedErrors++
			}
		})
		fail(aerr)
		return
	}
	if dry, aerr := p.boolean("DryRun", false); aerr != nil {
		fail(aerr)
		return
	} else if dry {
		fail(apiErr(http.StatusPreconditionFailed, "DryRunOperation", "Request would have succeeded, but DryRun flag is set."))
		return
	}
	resp, aerr := fn(h.m, r.Context(), p)
	if aerr != nil {
		if aerr.Status >= 500 {
			h.m.log.Warn("ec2sim action failed", "action", action, "code", aerr.Code, "err", aerr.Message)
		}
		fail(aerr)
		return
	}
	if err := writeXML(w, action, reqID, resp); err != nil {
		h.m.log.Error("ec2sim encode response", "action", action, "err", err)
		fail(errInternal("encoding the response: %v", err))
	}
}

// readQueryRequest reads a Query API request (form-encoded POST, or GET
// with a query string) into its parameters and the body that was signed.
func readQueryRequest(w http.ResponseWriter, r *http.Request) (params, []byte, *APIError) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, POST")
		return nil, nil, apiErr(http.StatusMethodNotAllowed, "InvalidHttpRequest", "The HTTP method %s is not supported", r.Method)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, nil, apiErr(http.StatusBadRequest, "InvalidHttpRequest", "Reading the request body: %v", err)
	}
	if len(body) > maxBodyBytes {
		return nil, nil, apiErr(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "The request body is larger than %d bytes", maxBodyBytes)
	}
	form := body
	if r.Method == http.MethodGet {
		form = nil
	} else if ct := r.Header.Get("Content-Type"); len(body) > 0 {
		mt, _, _ := mime.ParseMediaType(ct)
		if mt != "application/x-www-form-urlencoded" {
			return nil, nil, apiErr(http.StatusBadRequest, "InvalidHttpRequest", "Content-Type %q is not application/x-www-form-urlencoded", ct)
		}
	}
	p, perr := parseParams(r.URL.RawQuery, form)
	if perr != nil {
		return nil, nil, apiErr(http.StatusBadRequest, "MalformedQueryString", "%v", perr)
	}
	return p, body, nil
}
