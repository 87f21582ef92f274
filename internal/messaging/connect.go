// Package messaging is doraflow's JetStream runtime: it connects to NATS, provisions streams, durable
// consumers and KV buckets, publishes events with CloudEvents headers and deterministic Nats-Msg-Id,
// and runs handlers on a watermill router with retries, dead-lettering and graceful drain.
//
// It is the only package that imports watermill-nats, and it uses only its publisher: messages are
// consumed by doraflow's own subscriber on nats.go's jetstream API (docs/adr/0001), which binds to
// durable consumers created here, never fails on a delivery (a bad payload fails the handler's decode
// and is dead-lettered), and on close lets in-flight messages finish and their acks reach the server.
package messaging

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/internal/config"
	"github.com/doraflow/doraflow/internal/logging"
)

// Settings say how to reach NATS. They come from the environment (SettingsFromEnv).
type Settings struct {
	URL      string
	User     string
	Password config.Secret
	Token    config.Secret
	// NKeySeedFile is a file holding an NKey seed (SU...), for nkey authentication.
	NKeySeedFile string
	// CredsFile is a .creds file (JWT plus seed), for decentralized authentication.
	CredsFile   string
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string
	// Name is the client connection name shown by `nats server report connections`.
	Name string
}

// SettingsFromEnv reads the NATS_* variables. Problems are recorded in env.
func SettingsFromEnv(env *config.Env, service string) Settings {
	s := Settings{
		URL:          env.String("NATS_URL", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated"),
		User:         env.String("NATS_USER", "", "NATS user, with NATS_PASSWORD"),
		Password:     env.Secret("NATS_PASSWORD", false, "NATS password"),
		Token:        env.Secret("NATS_TOKEN", false, "NATS authentication token"),
		NKeySeedFile: env.String("NATS_NKEY_SEED_FILE", "", "file holding an NKey seed"),
		CredsFile:    env.String("NATS_CREDS_FILE", "", "NATS .creds file (JWT and seed)"),
		TLSCAFile:    env.String("NATS_TLS_CA_FILE", "", "CA bundle to verify the NATS server"),
		TLSCertFile:  env.String("NATS_TLS_CERT_FILE", "", "client certificate for mutual TLS"),
		TLSKeyFile:   env.String("NATS_TLS_KEY_FILE", "", "client key for mutual TLS"),
		Name:         service,
	}
	methods := 0
	for _, set := range []bool{s.User != "" || s.Password.IsSet(), s.Token.IsSet(), s.NKeySeedFile != "", s.CredsFile != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		env.Problemf("NATS authentication: set only one of NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY_SEED_FILE, NATS_CREDS_FILE")
	}
	if (s.User == "") != !s.Password.IsSet() {
		env.Problemf("NATS_USER and NATS_PASSWORD go together")
	}
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		env.Problemf("NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together")
	}
	return s
}

// Connect dials NATS and keeps reconnecting forever: a NATS outage shows in readiness, never as a
// crash loop. Connection state changes are logged once each.
func Connect(ctx context.Context, s Settings, log zerolog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(s.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn().Err(err).Msg("disconnected from NATS; reconnecting")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", logging.RedactURL(nc.ConnectedUrl())).Msg("reconnected to NATS")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Error().Err(err)
			if sub != nil {
				ev = ev.Str(logging.FieldSubject, sub.Subject)
			}
			ev.Msg("NATS asynchronous error")
		}),
	}
	switch {
	case s.User != "":
		opts = append(opts, nats.UserInfo(s.User, s.Password.Reveal()))
	case s.Token.IsSet():
		opts = append(opts, nats.Token(s.Token.Reveal()))
	case s.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(s.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("load NKey seed %s: %w", s.NKeySeedFile, err)
		}
		opts = append(opts, o)
	case s.CredsFile != "":
		// nats.go reads the file again at every (re)connect, so a rotated Secret is picked up by the
		// next reconnect; checking it here first turns a wrong file into one clear error at start.
		if err := checkCreds(s.CredsFile); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(s.CredsFile))
	}
	if s.TLSCAFile != "" || s.TLSCertFile != "" {
		tc, err := tlsConfig(s)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}

	// Retry the first dial with backoff until ctx ends, so a service that starts before NATS waits.
	// Rejected credentials are not retried: they will not get better, and the operator must know.
	backoff := 500 * time.Millisecond
	for {
		nc, err := nats.Connect(s.URL, opts...)
		if err == nil {
			log.Info().Str("server", logging.RedactURL(nc.ConnectedUrl())).Msg("connected to NATS")
			return nc, nil
		}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
			errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired) {
			return nil, fmt.Errorf("connect to NATS at %s: credentials rejected: %w", logging.RedactURL(s.URL), err)
		}
		if tlsErr := tlsFault(s, err); tlsErr != nil {
			return nil, fmt.Errorf("connect to NATS at %s: %w", logging.RedactURL(s.URL), tlsErr)
		}
		log.Warn().Str("error", logging.RedactText(err.Error())).Str("url", logging.RedactURL(s.URL)).Dur("retry_in", backoff).Msg("connect to NATS")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to NATS at %s: %w", logging.RedactURL(s.URL), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// checkCreds reads a .creds file as nats.go will: a user JWT and an nkey seed.
func checkCreds(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("load NATS_CREDS_FILE: %w", err)
	}
	defer clear(b)
	if _, err := nkeys.ParseDecoratedJWT(b); err != nil {
		return fmt.Errorf("load NATS_CREDS_FILE %s: no user JWT: %w", path, err)
	}
	kp, err := nkeys.ParseDecoratedUserNKey(b)
	if err != nil {
		return fmt.Errorf("load NATS_CREDS_FILE %s: no user nkey seed: %w", path, err)
	}
	kp.Wipe()
	return nil
}

// tlsFault explains a TLS failure that retrying cannot repair: the server's certificate is not
// signed by a trusted CA (or names another host), or the server refused the handshake, which with
// mutual TLS means it did not accept our client certificate. Other errors give nil.
func tlsFault(s Settings, err error) error {
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &verify) || errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) {
		ca := "NATS_TLS_CA_FILE is unset, so only the system CAs are trusted"
		if s.TLSCAFile != "" {
			ca = "NATS_TLS_CA_FILE=" + s.TLSCAFile
		}
		return fmt.Errorf("TLS: the server's certificate is not trusted (%s): %w", ca, err)
	}
	var op *net.OpError
	// With TLS 1.3 the server checks the client certificate after the handshake: its refusal arrives
	// as an alert ("remote error") or, when the connection is already gone, as nats.go's "connection
	// closed by remote after TLS handshake" with a broken pipe or reset beneath it.
	refused := errors.As(err, &op) && op.Op == "remote error"
	if !refused && strings.Contains(err.Error(), "after TLS handshake") {
		refused = true
	}
	if refused {
		cert := "no client certificate was sent: set NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE"
		if s.TLSCertFile != "" {
			cert = "NATS_TLS_CERT_FILE=" + s.TLSCertFile + " was not accepted"
		}
		return fmt.Errorf("TLS: the server refused the handshake; with mutual TLS it wants a client certificate signed by its CA (%s): %w", cert, err)
	}
	return nil
}

func tlsConfig(s Settings) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.TLSCAFile != "" {
		pem, err := os.ReadFile(s.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("read NATS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("NATS CA %s holds no PEM certificates", s.TLSCAFile)
		}
		tc.RootCAs = pool
	}
	if s.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.TLSCertFile, s.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("load NATS client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
