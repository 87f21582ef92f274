package main

import (
	"context"
	"path/filepath"
	"strconv"
	"time"
)

// services in start order: consumers first, so nothing waits long for its durable consumer.
var services = []string{"metrics-exporter", "devlake-sink", "enricher", "webrca-poller", "argocd-watcher"}

// launch says how startServices runs the services as child processes.
type launch struct {
	binDir string
	logDir string // each service logs to <logDir>/<service>.log
	config string // the YAML file every service gets with --config
	// opsBase is the first ops port; services get consecutive ports. 0 picks free ports.
	opsBase int
	// env is a service's environment, given its ops address.
	env   func(opsAddr string) []string
	ready time.Duration // how long every service together has to answer /readyz
	// started is called after each service starts, before the next one (to print its address).
	started func(c *child, opsAddr string)
}

// startServices starts every service in order, each with its own ops address, and waits until all
// answer /readyz (or ctx ends). It returns the processes started (also on error, so the caller can
// stop them) and each service's ops URL by name.
func startServices(ctx context.Context, l launch) ([]*child, map[string]string, error) {
	procs := make([]*child, 0, len(services))
	ops := map[string]string{}
	for i, s := range services {
		addr := "127.0.0.1:" + strconv.Itoa(l.opsBase+i)
		if l.opsBase <= 0 {
			var err error
			if addr, err = freeAddr(); err != nil {
				return procs, ops, err
			}
		}
		c, err := startChild(ctx, filepath.Join(l.binDir, s), s, filepath.Join(l.logDir, s+".log"),
			[]string{"--config", l.config}, l.env(addr))
		if err != nil {
			return procs, ops, err
		}
		procs = append(procs, c)
		ops[s] = "http://" + addr
		l.started(c, addr)
	}
	return procs, ops, waitReady(ctx, procs, ops, l.ready)
}
