// Command hanat-lab runs the simulated VPC of internal/vpcsim on this
// machine: `hanat-lab up` builds it and keeps its EC2 API, IMDS and internet
// servers running in a background `hanat-lab serve` process, the other
// commands inspect and disturb it, `hanat-lab down` removes it. Run
// `hanat-lab help` for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(mainCode())
}

func mainCode() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, os.Args[1:], os.Stdout, os.Stderr)
}
