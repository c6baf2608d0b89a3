package ec2sim

// XML shapes of the EC2 Query API responses (namespace 2016-11-15), named
// after the elements aws-sdk-go-v2's ec2 deserializers read. Lists are
// <xxxSet><item>…</item></xxxSet>.

import (
	"bytes"
	"encoding/xml"
	"net/http"
	"strconv"
)

const ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

// respHeader is embedded in every response body; its requestId is filled
// in by the handler.
type respHeader struct {
	RequestID string `xml:"requestId"`
}

func (h *respHeader) setRequestID(id string) { h.RequestID = id }

type response interface{ setRequestID(string) }

type returnResp struct {
	respHeader
	Return bool `xml:"return"`
}

type xTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

type xState struct {
	State string `xml:"state"`
}

type xVPC struct {
	VpcID           string          `xml:"vpcId"`
	OwnerID         string          `xml:"ownerId"`
	State           string          `xml:"state"`
	CidrBlock       string          `xml:"cidrBlock"`
	CidrAssocs      []xVPCCidrAssoc `xml:"cidrBlockAssociationSet>item"`
	DhcpOptionsID   string          `xml:"dhcpOptionsId"`
	InstanceTenancy string          `xml:"instanceTenancy"`
	IsDefault       bool            `xml:"isDefault"`
	Tags            []xTag          `xml:"tagSet>item"`
}

type xVPCCidrAssoc struct {
	AssociationID string `xml:"associationId"`
	CidrBlock     string `xml:"cidrBlock"`
	State         xState `xml:"cidrBlockState"`
}

type xIGW struct {
	InternetGatewayID string           `xml:"internetGatewayId"`
	OwnerID           string           `xml:"ownerId"`
	Attachments       []xIGWAttachment `xml:"attachmentSet>item"`
	Tags              []xTag           `xml:"tagSet>item"`
}

type xIGWAttachment struct {
	VpcID string `xml:"vpcId"`
	State string `xml:"state"`
}

type xSubnet struct {
	SubnetID                string `xml:"subnetId"`
	SubnetArn               string `xml:"subnetArn"`
	OwnerID                 string `xml:"ownerId"`
	State                   string `xml:"state"`
	VpcID                   string `xml:"vpcId"`
	CidrBlock               string `xml:"cidrBlock"`
	AvailableIPAddressCount int    `xml:"availableIpAddressCount"`
	AvailabilityZone        string `xml:"availabilityZone"`
	DefaultForAz            bool   `xml:"defaultForAz"`
	MapPublicIPOnLaunch     bool   `xml:"mapPublicIpOnLaunch"`
	Tags                    []xTag `xml:"tagSet>item"`
}

type xRouteTable struct {
	RouteTableID string     `xml:"routeTableId"`
	VpcID        string     `xml:"vpcId"`
	OwnerID      string     `xml:"ownerId"`
	Routes       []xRoute   `xml:"routeSet>item"`
	Associations []xRTAssoc `xml:"associationSet>item"`
	Tags         []xTag     `xml:"tagSet>item"`
}

type xRoute struct {
	DestinationCidrBlock string `xml:"destinationCidrBlock"`
	GatewayID            string `xml:"gatewayId,omitempty"`
	InstanceID           string `xml:"instanceId,omitempty"`
	InstanceOwnerID      string `xml:"instanceOwnerId,omitempty"`
	NetworkInterfaceID   string `xml:"networkInterfaceId,omitempty"`
	State                string `xml:"state"`
	Origin               string `xml:"origin"`
}

type xRTAssoc struct {
	RouteTableAssociationID string `xml:"routeTableAssociationId"`
	RouteTableID            string `xml:"routeTableId"`
	SubnetID                string `xml:"subnetId,omitempty"`
	Main                    bool   `xml:"main"`
	AssociationState        xState `xml:"associationState"`
}

type xReservation struct {
	ReservationID string      `xml:"reservationId"`
	OwnerID       string      `xml:"ownerId"`
	Instances     []xInstance `xml:"instancesSet>item"`
}

type xInstance struct {
	InstanceID         string         `xml:"instanceId"`
	ImageID            string         `xml:"imageId"`
	InstanceState      xInstanceState `xml:"instanceState"`
	PrivateDNSName     string         `xml:"privateDnsName"`
	DNSName            string         `xml:"dnsName"`
	InstanceType       string         `xml:"instanceType"`
	LaunchTime         string         `xml:"launchTime"`
	Placement          xPlacement     `xml:"placement"`
	SubnetID           string         `xml:"subnetId"`
	VpcID              string         `xml:"vpcId"`
	PrivateIPAddress   string         `xml:"privateIpAddress"`
	IPAddress          string         `xml:"ipAddress,omitempty"`
	SourceDestCheck    bool           `xml:"sourceDestCheck"`
	Architecture       string         `xml:"architecture"`
	RootDeviceType     string         `xml:"rootDeviceType"`
	VirtualizationType string         `xml:"virtualizationType"`
	Hypervisor         string         `xml:"hypervisor"`
	NetworkInterfaces  []xInstanceENI `xml:"networkInterfaceSet>item"`
	Tags               []xTag         `xml:"tagSet>item"`
}

type xInstanceState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type xPlacement struct {
	AvailabilityZone string `xml:"availabilityZone"`
	Tenancy          string `xml:"tenancy"`
}

type xInstanceENI struct {
	NetworkInterfaceID string                `xml:"networkInterfaceId"`
	SubnetID           string                `xml:"subnetId"`
	VpcID              string                `xml:"vpcId"`
	OwnerID            string                `xml:"ownerId"`
	Status             string                `xml:"status"`
	MacAddress         string                `xml:"macAddress"`
	PrivateIPAddress   string                `xml:"privateIpAddress"`
	PrivateDNSName     string                `xml:"privateDnsName"`
	SourceDestCheck    bool                  `xml:"sourceDestCheck"`
	InterfaceType      string                `xml:"interfaceType"`
	Attachment         xInstanceENIAttach    `xml:"attachment"`
	Association        *xInstanceENIAssoc    `xml:"association,omitempty"`
	PrivateIPAddresses []xInstancePrivateIPs `xml:"privateIpAddressesSet>item"`
}

type xInstanceENIAttach struct {
	AttachmentID        string `xml:"attachmentId"`
	DeviceIndex         int    `xml:"deviceIndex"`
	NetworkCardIndex    int    `xml:"networkCardIndex"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xInstanceENIAssoc struct {
	PublicIP      string `xml:"publicIp"`
	PublicDNSName string `xml:"publicDnsName"`
	IPOwnerID     string `xml:"ipOwnerId"`
}

type xInstancePrivateIPs struct {
	PrivateIPAddress string             `xml:"privateIpAddress"`
	PrivateDNSName   string             `xml:"privateDnsName"`
	Primary          bool               `xml:"primary"`
	Association      *xInstanceENIAssoc `xml:"association,omitempty"`
}

type xENI struct {
	NetworkInterfaceID string          `xml:"networkInterfaceId"`
	SubnetID           string          `xml:"subnetId"`
	VpcID              string          `xml:"vpcId"`
	AvailabilityZone   string          `xml:"availabilityZone"`
	Description        string          `xml:"description"`
	OwnerID            string          `xml:"ownerId"`
	RequesterManaged   bool            `xml:"requesterManaged"`
	Status             string          `xml:"status"`
	MacAddress         string          `xml:"macAddress"`
	PrivateIPAddress   string          `xml:"privateIpAddress"`
	PrivateDNSName     string          `xml:"privateDnsName"`
	SourceDestCheck    bool            `xml:"sourceDestCheck"`
	InterfaceType      string          `xml:"interfaceType"`
	Attachment         *xENIAttach     `xml:"attachment,omitempty"`
	Association        *xENIAssoc      `xml:"association,omitempty"`
	PrivateIPAddresses []xENIPrivateIP `xml:"privateIpAddressesSet>item"`
	Tags               []xTag          `xml:"tagSet>item"`
}

type xENIAttach struct {
	AttachmentID        string `xml:"attachmentId"`
	InstanceID          string `xml:"instanceId"`
	InstanceOwnerID     string `xml:"instanceOwnerId"`
	DeviceIndex         int    `xml:"deviceIndex"`
	NetworkCardIndex    int    `xml:"networkCardIndex"`
	Status              string `xml:"status"`
	AttachTime          string `xml:"attachTime"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xENIAssoc struct {
	PublicIP      string `xml:"publicIp"`
	PublicDNSName string `xml:"publicDnsName"`
	IPOwnerID     string `xml:"ipOwnerId"`
	AllocationID  string `xml:"allocationId"`
	AssociationID string `xml:"associationId"`
}

type xENIPrivateIP struct {
	PrivateIPAddress string     `xml:"privateIpAddress"`
	PrivateDNSName   string     `xml:"privateDnsName"`
	Primary          bool       `xml:"primary"`
	Association      *xENIAssoc `xml:"association,omitempty"`
}

type xAddress struct {
	PublicIP                string `xml:"publicIp"`
	AllocationID            string `xml:"allocationId"`
	Domain                  string `xml:"domain"`
	AssociationID           string `xml:"associationId,omitempty"`
	InstanceID              string `xml:"instanceId,omitempty"`
	NetworkInterfaceID      string `xml:"networkInterfaceId,omitempty"`
	NetworkInterfaceOwnerID string `xml:"networkInterfaceOwnerId,omitempty"`
	PrivateIPAddress        string `xml:"privateIpAddress,omitempty"`
	PublicIpv4Pool          string `xml:"publicIpv4Pool"`
	NetworkBorderGroup      string `xml:"networkBorderGroup"`
	Tags                    []xTag `xml:"tagSet>item"`
}

type xTagDescription struct {
	ResourceID   string `xml:"resourceId"`
	ResourceType string `xml:"resourceType"`
	Key          string `xml:"key"`
	Value        string `xml:"value"`
}

// Response bodies.

type describeVpcsResp struct {
	respHeader
	Vpcs      []xVPC `xml:"vpcSet>item"`
	NextToken string `xml:"nextToken,omitempty"`
}

type describeIGWsResp struct {
	respHeader
	InternetGateways []xIGW `xml:"internetGatewaySet>item"`
	NextToken        string `xml:"nextToken,omitempty"`
}

type describeSubnetsResp struct {
	respHeader
	Subnets   []xSubnet `xml:"subnetSet>item"`
	NextToken string    `xml:"nextToken,omitempty"`
}

type describeRouteTablesResp struct {
	respHeader
	RouteTables []xRouteTable `xml:"routeTableSet>item"`
	NextToken   string        `xml:"nextToken,omitempty"`
}

type describeInstancesResp struct {
	respHeader
	Reservations []xReservation `xml:"reservationSet>item"`
	NextToken    string         `xml:"nextToken,omitempty"`
}

type describeENIsResp struct {
	respHeader
	NetworkInterfaces []xENI `xml:"networkInterfaceSet>item"`
	NextToken         string `xml:"nextToken,omitempty"`
}

type describeAddressesResp struct {
	respHeader
	Addresses []xAddress `xml:"addressesSet>item"`
}

type describeTagsResp struct {
	respHeader
	Tags      []xTagDescription `xml:"tagSet>item"`
	NextToken string            `xml:"nextToken,omitempty"`
}

type associateAddressResp struct {
	respHeader
	AssociationID string `xml:"associationId"`
}

type assignPrivateIPsResp struct {
	respHeader
	NetworkInterfaceID string          `xml:"networkInterfaceId"`
	Assigned           []xAssignedAddr `xml:"assignedPrivateIpAddressesSet>item"`
}

type xAssignedAddr struct {
	PrivateIPAddress string `xml:"privateIpAddress"`
}

type xErrorResponse struct {
	XMLName   xml.Name `xml:"Response"`
	Errors    []xError `xml:"Errors>Error"`
	RequestID string   `xml:"RequestID"`
}

type xError struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// writeXML writes <ActionResponse xmlns="…">body</ActionResponse>.
func writeXML(w http.ResponseWriter, action, requestID string, body response) error {
	body.setRequestID(requestID)
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	start := xml.StartElement{Name: xml.Name{Space: ec2Namespace, Local: action + "Response"}}
	if err := xml.NewEncoder(&buf).EncodeElement(body, start); err != nil {
		return err
	}
	writeBody(w, http.StatusOK, "text/xml;charset=UTF-8", requestID, buf.Bytes())
	return nil
}

// writeError writes AWS's EC2 error document.
func writeError(w http.ResponseWriter, requestID string, e *APIError) {
	out, err := xml.Marshal(xErrorResponse{Errors: []xError{{Code: e.Code, Message: e.Message}}, RequestID: requestID})
	if err != nil { // cannot happen for strings; keep a valid answer anyway
		out = []byte("<Response><Errors><Error><Code>InternalError</Code></Error></Errors></Response>")
	}
	writeBody(w, e.Status, "text/xml;charset=UTF-8", requestID, append([]byte(xml.Header), out...))
}

func writeBody(w http.ResponseWriter, status int, contentType, requestID string, b []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Amzn-RequestId", requestID)
	h.Set("Server", "AmazonEC2")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

type xVpcEndpoint struct {
	VpcEndpointID       string   `xml:"vpcEndpointId"`
	VpcEndpointType     string   `xml:"vpcEndpointType"`
	VpcID               string   `xml:"vpcId"`
	ServiceName         string   `xml:"serviceName"`
	State               string   `xml:"state"`
	RouteTableIDs       []string `xml:"routeTableIdSet>item"`
	SubnetIDs           []string `xml:"subnetIdSet>item"`
	NetworkInterfaceIDs []string `xml:"networkInterfaceIdSet>item"`
	PrivateDNSEnabled   bool     `xml:"privateDnsEnabled"`
	RequesterManaged    bool     `xml:"requesterManaged"`
	CreationTimestamp   string   `xml:"creationTimestamp"`
	OwnerID             string   `xml:"ownerId"`
	IPAddressType       string   `xml:"ipAddressType"`
	Tags                []xTag   `xml:"tagSet>item"`
}

type describeVpcEndpointsResp struct {
	respHeader
	VpcEndpoints []xVpcEndpoint `xml:"vpcEndpointSet>item"`
	NextToken    string         `xml:"nextToken,omitempty"`
}
