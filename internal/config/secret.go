// Package config reads doraflow's configuration: settings from the environment (endpoints,
// identities, secrets, log level), behaviour from one strictly decoded YAML file, and the flags every
// binary shares. Every loader reports all problems at once, never just the first.
package config

import "encoding/json"

// Secret is a credential read from the environment or a mounted file. It never prints, marshals or
// logs its value; call Reveal at the one place the value is sent to the system that needs it.
type Secret struct{ value string }

// NewSecret wraps a credential.
func NewSecret(v string) Secret { return Secret{value: v} }

// Reveal returns the credential itself.
func (s Secret) Reveal() string { return s.value }

// IsSet reports whether the secret holds a non-empty value.
func (s Secret) IsSet() bool { return s.value != "" }

const redacted = "[redacted]"

// String implements fmt.Stringer without revealing the value.
func (s Secret) String() string {
	if s.value == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer, so %#v does not reveal the value either.
func (s Secret) GoString() string { return `config.Secret("` + s.String() + `")` }

// MarshalText implements encoding.TextMarshaler (used by zerolog, YAML and JSON map keys).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }
