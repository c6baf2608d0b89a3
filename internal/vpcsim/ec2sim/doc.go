// Package ec2sim is the in-memory model of the simulated VPC (VPCs, internet
// gateways, subnets, route tables, instances, ENIs, Elastic IPs, tags) and
// the two HTTP faces hanat sees of AWS: the EC2 Query API and IMDSv2. It
// creates no network state itself; internal/vpcsim builds the namespaces,
// implements Fabric and serves the handlers.
//
// # Mutations
//
// Every accepted mutation is validated under the model's lock, applied
// through the Fabric with the lock released (API mutations are serialized
// among themselves), and committed to the model only when every Fabric call
// succeeded. A failed multi-step change (an EIP replacing another, a
// secondary IP moving between ENIs) is undone step by step on the Fabric
// and answered with 500 InternalError, so the model and the network never
// disagree.
//
// # EC2 Query API (EC2Handler)
//
// Form-encoded POST or GET with a query string, Version=2016-11-15, SigV4
// (AWS4-HMAC-SHA256, service ec2, the model's region) checked against the
// configured Credentials with at most 15 minutes of clock skew. Responses
// are XML in the http://ec2.amazonaws.com/doc/2016-11-15/ namespace; errors
// are <Response><Errors><Error><Code>… with AWS's codes and statuses.
// Actions: DescribeInstances, DescribeNetworkInterfaces, DescribeSubnets,
// DescribeVpcs, DescribeInternetGateways, DescribeRouteTables,
// DescribeAddresses, DescribeTags (filters with * and ? wildcards, tag:KEY,
// tag-key, tag-value; MaxResults/NextToken), ModifyNetworkInterfaceAttribute
// and ModifyInstanceAttribute (SourceDestCheck), CreateRoute, ReplaceRoute,
// DeleteRoute (GatewayId, NetworkInterfaceId, InstanceId targets),
// AssociateAddress, DisassociateAddress, AssignPrivateIpAddresses,
// UnassignPrivateIpAddresses, CreateTags, DeleteTags (Tag.N.Key alone
// deletes the key, with Tag.N.Value, even empty, only that value; no Tag.N
// deletes every tag but aws: ones). DryRun=true answers
// DryRunOperation (412) without checking the request further.
//
// Deliberate simplifications: one region and account; IPv4 only; CreateRoute
// of an existing destination is RouteAlreadyExists even with the same
// target; the local route can be neither deleted nor re-pointed; presigned
// (query-string) SigV4 is not accepted.
//
// # Auto Scaling Query API (AutoScalingHandler)
//
// Version=2011-01-01, SigV4 for service autoscaling, XML in the
// http://autoscaling.amazonaws.com/doc/2011-01-01/ namespace
// (<ActionResponse><ActionResult>…<ResponseMetadata>), errors as
// <ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code>….
// Actions: DescribeAutoScalingInstances (InstanceIds.member.N),
// DescribeLifecycleHooks (AutoScalingGroupName, LifecycleHookNames.member.N)
// and CompleteLifecycleAction by InstanceId ("No active Lifecycle Action
// found with instance ID …" unless the instance waits on that hook; the
// last hook completed moves it from Terminating:Wait to
// Terminating:Proceed). Groups and scale-ins come from the model
// (CreateAutoScalingGroup, ScaleIn, which also sets IMDS's target
// lifecycle state to Terminated); no heartbeat timeout runs, nothing is
// terminated, no notification or token is sent.
//
// # IMDSv2 (IMDSHandler)
//
// PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds (1..21600,
// echoed) returns a token bound to the calling instance; every GET needs a
// live token of that instance (else 401). meta-data/ has instance-id,
// ami-id, instance-type, placement/{region,availability-zone}, mac,
// local-ipv4, public-ipv4 (404 without one), local-hostname, and
// network/interfaces/macs/<mac>/{interface-id, device-number, subnet-id,
// subnet-ipv4-cidr-block, vpc-id, vpc-ipv4-cidr-block(s), local-ipv4s,
// public-ipv4s, ipv4-associations/<public-ip>}; dynamic/ has
// instance-identity/document. Directories list their entries, sub-
// directories ending in '/'.
//
// # Faults
//
// SetFaults adds latency, 500 InternalError and 503 RequestLimitExceeded
// with given probabilities (optionally only for some actions), from a
// random sequence fixed by Faults.Seed. Stats counts what the handler saw.
package ec2sim
