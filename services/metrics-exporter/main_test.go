package main

import (
	"testing"

	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
)

func TestRunServesOpsEndpointsAndDrains(t *testing.T) {
	srv := natstest.Start(t)
	s := servicetest.Start(t, run, map[string]string{"NATS_URL": srv.URL()}, "--config", "testdata/config/valid-windows.yaml")
	servicetest.AssertStandardEndpoints(t, s, "metrics-exporter")
	s.Stop(t)
}

func TestVersion(t *testing.T) { servicetest.AssertVersion(t, run, "metrics-exporter") }

func TestCheckConfig(t *testing.T) { servicetest.AssertConfigFiles(t, run) }
