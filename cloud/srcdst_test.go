package cloud

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go"
)

type fakeChecker struct {
	mu    sync.Mutex
	calls []string
	errs  []error // returned in order, then nil
}

func (f *fakeChecker) DisableSourceDestCheck(_ context.Context, eni string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, eni)
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return false, err
	}
	return len(f.calls) == 1, nil
}

func (f *fakeChecker) n() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.calls) }

// TestSourceDestKeeper: the keeper waits for the ENI to be known, retries
// a failing call with backoff until the check is off, reports each state,
// and stops with its context.
func TestSourceDestKeeper(t *testing.T) {
	var mu sync.Mutex
	eni := ""
	f := &fakeChecker{errs: []error{errors.New("connection reset")}}
	k := NewSourceDestKeeper(nil, f, func() string { mu.Lock(); defer mu.Unlock(); return eni })
	k.Recheck, k.Unknown = time.Hour, 5*time.Millisecond
	if s := k.State(); !strings.HasPrefix(s, "unknown") {
		t.Errorf("before Run: %q", s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	time.Sleep(30 * time.Millisecond)
	if f.n() != 0 {
		t.Fatalf("called EC2 %d times before the ENI was known", f.n())
	}
	mu.Lock()
	eni = "eni-a"
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for k.State() != "disabled" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := k.State(); s != "disabled" || f.n() != 2 {
		t.Errorf("after a failure and a retry: state %q, %d calls; want disabled after 2", s, f.n())
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
}

// TestSourceDestKeeperIAMRefusal: a refusal names the action and is not
// retried at the fast pace.
func TestSourceDestKeeperIAMRefusal(t *testing.T) {
	denied := &smithy.GenericAPIError{Code: "UnauthorizedOperation", Message: "You are not authorized to perform: ec2:ModifyNetworkInterfaceAttribute"}
	f := &fakeChecker{errs: []error{denied, denied, denied}}
	k := NewSourceDestKeeper(nil, f, func() string { return "eni-a" })
	k.Recheck = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { k.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for f.n() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // past the 1 s backoff
	if s := k.State(); s != "unknown: IAM refused ec2:ModifyNetworkInterfaceAttribute" || f.n() != 1 {
		t.Errorf("state %q after %d calls; want the refused action and no fast retry", s, f.n())
	}
	cancel()
	<-done
}
