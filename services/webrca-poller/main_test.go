package main

import (
	"testing"

	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
)

func TestRunServesOpsEndpointsAndDrains(t *testing.T) {
	srv := natstest.Start(t)
	s := servicetest.Start(t, run, map[string]string{"NATS_URL": srv.URL()}, "--config", "testdata/config/valid-seed.yaml")
	servicetest.AssertStandardEndpoints(t, s, "webrca-poller")
	s.Stop(t)
}

func TestVersion(t *testing.T) { servicetest.AssertVersion(t, run, "webrca-poller") }

func TestCheckConfig(t *testing.T) { servicetest.AssertConfigFiles(t, run) }
