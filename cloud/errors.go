package cloud

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// CallError is a failed EC2 call: the operation, the resource it was
// about, and the SDK's error (reachable with errors.As / errors.Is, e.g.
// smithy.APIError or context.DeadlineExceeded).
type CallError struct {
	Action   string // EC2 operation, e.g. "ReplaceRoute"
	Resource string // e.g. "rtb-0a1b 0.0.0.0/0 -> eni-2c3d"
	Err      error

	timeout time.Duration // the call's own deadline when that is what ended it
}

// Error reads "ec2 ReplaceRoute rtb-… 0.0.0.0/0 -> eni-…: InternalError: …
// (gave up after 8 attempts, request id …)".
func (e *CallError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ec2 %s", e.Action)
	if e.Resource != "" {
		b.WriteString(" " + e.Resource)
	}
	b.WriteString(": ")
	var notes []string
	var api smithy.APIError
	var maxAttempts *retry.MaxAttemptsError
	switch {
	case errors.Is(e.Err, context.DeadlineExceeded) && e.timeout > 0:
		fmt.Fprintf(&b, "no answer within the call's deadline (%s): %v", e.timeout, context.DeadlineExceeded)
	case errors.Is(e.Err, context.DeadlineExceeded):
		b.WriteString("the caller's " + context.DeadlineExceeded.Error())
	case errors.Is(e.Err, context.Canceled):
		b.WriteString(context.Canceled.Error())
	case errors.As(e.Err, &api):
		b.WriteString(api.ErrorCode())
		if msg := api.ErrorMessage(); msg != "" {
			b.WriteString(": " + msg)
		}
	default:
		b.WriteString(e.Err.Error())
	}
	if errors.As(e.Err, &maxAttempts) {
		notes = append(notes, fmt.Sprintf("gave up after %d attempts", maxAttempts.Attempt))
	}
	var resp *awshttp.ResponseError
	if errors.As(e.Err, &resp) && resp.ServiceRequestID() != "" {
		notes = append(notes, "request id "+resp.ServiceRequestID())
	}
	if len(notes) > 0 {
		b.WriteString(" (" + strings.Join(notes, ", ") + ")")
	}
	return b.String()
}

func (e *CallError) Unwrap() error { return e.Err }

// ErrorCode returns the EC2 error code of err ("" when err carries none,
// e.g. a timeout or a transport failure).
func ErrorCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

var deniedAction = regexp.MustCompile(`perform: (ec2:[A-Za-z0-9]+)`)

// IsAccessDenied reports whether IAM refused the call
// (UnauthorizedOperation, AccessDenied…), and which action it refused as
// "ec2:Operation" (from the call, or AWS's message; "" when unknown), so
// hanatd can say what to add to the instance role.
func IsAccessDenied(err error) (action string, ok bool) {
	code := strings.TrimPrefix(ErrorCode(err), "Client.")
	if code != "UnauthorizedOperation" && !strings.HasPrefix(code, "AccessDenied") {
		return "", false
	}
	var ce *CallError
	var op *smithy.OperationError
	var api smithy.APIError
	switch {
	case errors.As(err, &ce) && ce.Action != "":
		return "ec2:" + ce.Action, true
	case errors.As(err, &op) && op.OperationName != "":
		return "ec2:" + op.OperationName, true
	case errors.As(err, &api):
		if m := deniedAction.FindStringSubmatch(api.ErrorMessage()); m != nil {
			return m[1], true
		}
	}
	return "", true
}

// IsNotFound reports an EC2 "does not exist" error: any *.NotFound code
// (InvalidRouteTableID.NotFound, InvalidNetworkInterfaceID.NotFound,
// InvalidAllocationID.NotFound, InvalidRoute.NotFound, …).
func IsNotFound(err error) bool {
	code := ErrorCode(err)
	return code == "NotFound" || strings.HasSuffix(code, ".NotFound")
}

// IsThrottled reports that EC2 throttled the call (after the retries).
func IsThrottled(err error) bool {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return false
	}
	_, ok := retry.DefaultThrottleErrorCodes[api.ErrorCode()]
	return ok
}
