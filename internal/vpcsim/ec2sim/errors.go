package ec2sim

import (
	"fmt"
	"net/http"
)

// APIError is an EC2 error as the Query API returns it: an HTTP status, an
// AWS error code and a message.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

func apiErr(status int, code, format string, args ...any) *APIError {
	return &APIError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func errInvalidParam(format string, args ...any) *APIError {
	return apiErr(http.StatusBadRequest, "InvalidParameterValue", format, args...)
}

func errParamCombination(format string, args ...any) *APIError {
	return apiErr(http.StatusBadRequest, "InvalidParameterCombination", format, args...)
}

func errMissing(name string) *APIError {
	return apiErr(http.StatusBadRequest, "MissingParameter", "The request must contain the parameter %s", name)
}

// errNotFound is AWS's "The routeTable ID 'rtb-x' does not exist" family.
func errNotFound(code, what, id string) *APIError {
	return apiErr(http.StatusBadRequest, code, "The %s ID '%s' does not exist", what, id)
}

func errMultipleInterfaces(instanceID string) *APIError {
	return apiErr(http.StatusBadRequest, "InvalidInstanceID",
		"There are multiple interfaces attached to instance '%s'. Please specify an interface ID for the operation instead.", instanceID)
}

func errInternal(format string, args ...any) *APIError {
	return apiErr(http.StatusInternalServerError, "InternalError", format, args...)
}

// Resource kinds by id prefix: the NotFound code and noun AWS uses, and the
// resource type DescribeTags reports.
type idKind struct {
	prefix       string
	notFound     string
	noun         string
	resourceType string
}

var idKinds = []idKind{
	{"vpc", "InvalidVpcID.NotFound", "vpc", "vpc"},
	{"igw", "InvalidInternetGatewayID.NotFound", "internetGateway", "internet-gateway"},
	{"subnet", "InvalidSubnetID.NotFound", "subnet", "subnet"},
	{"rtb", "InvalidRouteTableID.NotFound", "routeTable", "route-table"},
	{"i", "InvalidInstanceID.NotFound", "instance", "instance"},
	{"eni", "InvalidNetworkInterfaceID.NotFound", "networkInterface", "network-interface"},
	{"eipalloc", "InvalidAllocationID.NotFound", "allocation", "elastic-ip"},
	{"vpce", "InvalidVpcEndpointId.NotFound", "vpcEndpoint", "vpc-endpoint"},
}

func kindOf(id string) (idKind, bool) {
	for _, k := range idKinds {
		if len(id) > len(k.prefix)+1 && id[:len(k.prefix)+1] == k.prefix+"-" {
			return k, true
		}
	}
	return idKind{}, false
}

func notFoundFor(id string) *APIError {
	if k, ok := kindOf(id); ok {
		return errNotFound(k.notFound, k.noun, id)
	}
	return apiErr(http.StatusBadRequest, "InvalidID", "The ID '%s' is not valid", id)
}
