package cloud

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// SourceDestChecker turns an ENI's source/destination check off; *EC2 is
// the real one.
type SourceDestChecker interface {
	DisableSourceDestCheck(ctx context.Context, eniID string) (changed bool, err error)
}

// SourceDestKeeper keeps the source/dest check of the NAT's outside ENI
// off: EC2 drops forwarded packets while it is on, and an operator or a
// launch template may turn it back on.
type SourceDestKeeper struct {
	log *slog.Logger
	ec2 SourceDestChecker
	eni func() string // the outside ENI's id; "" while unknown
	// Recheck is how often a check that is off is checked again;
	// Unknown how soon an unknown ENI is asked for again.
	Recheck, Unknown time.Duration

	mu    sync.Mutex
	state string
}

// NewSourceDestKeeper returns a keeper of the ENI that eni names.
func NewSourceDestKeeper(log *slog.Logger, ec2 SourceDestChecker, eni func() string) *SourceDestKeeper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SourceDestKeeper{log: log, ec2: ec2, eni: eni, Recheck: 5 * time.Minute, Unknown: 2 * time.Second}
}

// State is "disabled", or "unknown: " and why.
func (k *SourceDestKeeper) State() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.state == "" {
		return "unknown: not checked yet"
	}
	return k.state
}

func (k *SourceDestKeeper) set(s string) {
	k.mu.Lock()
	k.state = s
	k.mu.Unlock()
}

// Run disables the check, retrying with backoff (1 s doubling to a minute)
// until it is off, then re-checks it every Recheck, until ctx is done. An
// IAM refusal is logged once with the missing action and retried at the
// Recheck pace; NAT keeps running either way.
func (k *SourceDestKeeper) Run(ctx context.Context) {
	backoff := time.Second
	loggedDenied := false
	for {
		wait := k.Recheck
		if id := k.eni(); id == "" {
			wait = k.Unknown
		} else {
			changed, err := k.ec2.DisableSourceDestCheck(ctx, id)
			action, denied := "", false
			if err != nil {
				action, denied = IsAccessDenied(err)
			}
			switch {
			case err == nil:
				k.set("disabled")
				if changed {
					k.log.Info("source/destination check disabled", "eni", id)
				}
				backoff = time.Second
			case denied:
				k.set("unknown: IAM refused " + action)
				if !loggedDenied {
					k.log.Error("IAM refused the source/dest check call: allow the action in the instance role and tag the ENI with key \"hanat\" (packaging/iam-policy.json scopes changes to tagged resources). NAT keeps running, but EC2 drops forwarded packets while the check is on",
						"action", action, "eni", id, "err", err)
					loggedDenied = true
				}
			default:
				k.set("unknown: " + err.Error())
				k.log.Warn("source/dest check", "eni", id, "err", err, "retry_in", backoff)
				wait = backoff
				backoff = min(backoff*2, time.Minute)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
