// Package e2e tests doraflow as users run it: the service binaries as processes against one
// embedded NATS JetStream server and HTTP fakes of the external systems.
package e2e
