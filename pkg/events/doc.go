// Package events defines doraflow's wire contracts: the JSON bodies that travel on NATS JetStream
// subjects, the subjects and streams they travel on, and the CloudEvents 1.0 attributes each message
// carries as NATS headers.
//
// The package imports only the standard library, so anything that wants to read doraflow's events (a
// DevLake plugin, a dashboard backend, a test) can depend on it without pulling in NATS or Kubernetes.
//
// # Compatibility rules
//
//   - One Go type per subject. A type is a past-tense fact about the world, named without an Event suffix.
//   - Changes are additive: a new optional field (with omitempty) is compatible; consumers ignore
//     fields they do not know. Renaming, removing or changing the meaning of a field is not: it needs a
//     new type on a ".v2" subject, published alongside the old one until every consumer has moved.
//   - The CloudEvents type of every message ends in its major version (".v1"), so a reader can tell
//     contracts apart without parsing the body.
//   - Event IDs are deterministic: the same real-world event always gets the same ID. The ID is also the
//     Nats-Msg-Id header, so JetStream drops repeats inside its duplicate window, and receivers treat a
//     repeat as success.
//   - Times are UTC with nanosecond precision (RFC 3339). Zero times are omitted, never sent as
//     0001-01-01.
//
// The files in testdata/ pin the wire format: a round-trip test fails when a field is renamed.
package events
