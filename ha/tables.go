package ha

import (
	"context"
	"slices"
)

// discoverMissing narrows o.Discover to what the configuration leaves
// open: home tables only when none are configured, backup tables only
// for a pair and only when none are configured; with nothing open it
// asks the cloud nothing.
func (o Options) discoverMissing() func(ctx context.Context, eni, peerENI string) (Discovered, error) {
	discover := o.Discover
	if discover == nil {
		return nil
	}
	wantHome := len(o.Home) == 0
	wantBackup := o.Peer.IsValid() && len(o.Backup) == 0
	return func(ctx context.Context, eni, peerENI string) (Discovered, error) {
		if !wantHome && !wantBackup {
			return Discovered{}, nil
		}
		found, err := discover(ctx, eni, peerENI)
		if err != nil {
			return Discovered{}, err
		}
		if !wantHome {
			found.Home = nil
		}
		if !wantBackup {
			found.Backup = nil
		}
		return found, nil
	}
}

// HomeAway reports whether the peer serves every home table of this
// node (none: false).
func (s EngineStatus) HomeAway() bool {
	home := 0
	for _, t := range s.Tables {
		if t.Home {
			home++
			if t.OwnerNode == "self" {
				return false
			}
		}
	}
	return home > 0
}

// FollowedBy are the home tables (home) or the backup tables that an EIP
// follows (Status.EIPs).
func (s Status) FollowedBy(home bool) []string {
	var out []string
	for _, t := range s.Tables {
		if t.Home != home {
			continue
		}
		for _, e := range s.EIPs {
			if slices.Contains(e.RouteTables, t.ID) {
				out = append(out, t.ID)
				break
			}
		}
	}
	return out
}
