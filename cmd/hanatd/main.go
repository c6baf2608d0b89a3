// Command hanatd is the hanat NAT daemon: it turns the instance it runs on
// into a NAT for its VPC's private subnets (nftables + conntrack slow path),
// serves the admin socket used by hanatctl, and keeps the datapath
// reconciled with its configuration.
//
// Usage:
//
//	hanatd [--config FILE]          run the daemon
//	hanatd --check-config FILE      validate a config file and exit (like nginx -t)
//	hanatd --cleanup [--config F]   remove everything hanat installed and exit
//	hanatd --version
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// version is set by the linker (-X main.version=…).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
