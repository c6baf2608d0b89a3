package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// sdNotify tells systemd (Type=notify) about hanatd's state. Outside
// systemd (no NOTIFY_SOCKET) every call is a no-op.
type sdNotify struct {
	log *slog.Logger
}

// ready is sent once the datapath is reconciled: the NAT forwards.
func (s sdNotify) ready() {
	if ok, err := sd.SdNotify(false, sd.SdNotifyReady); err != nil {
		s.log.Warn("sd_notify READY", "err", err)
	} else if ok {
		s.log.Debug("sd_notify READY sent")
	}
}

func (s sdNotify) stopping() {
	_, _ = sd.SdNotify(false, sd.SdNotifyStopping)
}

// extendTimeout asks systemd for d more of the current start or stop
// timeout (a fleet member's drain outlasts TimeoutStopSec).
func (s sdNotify) extendTimeout(d time.Duration) {
	if d <= 0 {
		return
	}
	_, _ = sd.SdNotify(false, fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", d.Microseconds()))
}

func (s sdNotify) status(msg string) {
	_, _ = sd.SdNotify(false, "STATUS="+msg)
}

// watchdog pings systemd at half the unit's WatchdogSec while alive()
// holds; alive is the main loop's liveness (it answered recently), so a
// wedged control plane gets restarted while the datapath keeps forwarding.
func (s sdNotify) watchdog(ctx context.Context, alive func() bool) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if alive() {
				_, _ = sd.SdNotify(false, sd.SdNotifyWatchdog)
			} else {
				s.log.Warn("main loop unresponsive; withholding the systemd watchdog ping")
			}
		}
	}
}
