package natstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// PKI is a throwaway certificate authority for tests, with PEM files in a temporary directory: the
// CA, a server certificate for 127.0.0.1 and localhost, and a client certificate. Nothing is
// committed; every test run makes new keys.
type PKI struct {
	CAFile         string // the CA certificate, for NATS_TLS_CA_FILE
	ServerCertFile string
	ServerKeyFile  string
	ClientCertFile string // for NATS_TLS_CERT_FILE
	ClientKeyFile  string // for NATS_TLS_KEY_FILE
	pool           *x509.CertPool
	server         tls.Certificate
}

// NewPKI makes a CA and the certificates it signs, valid for an hour.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	p := &PKI{pool: x509.NewCertPool()}
	caKey, caCert := newCert(t, "natstest CA", nil, nil, func(c *x509.Certificate) {
		c.IsCA, c.BasicConstraintsValid = true, true
		c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	})
	p.pool.AddCert(caCert)
	p.CAFile = writePEM(t, dir, "ca.pem", "CERTIFICATE", caCert.Raw)

	serverKey, serverCert := newCert(t, "natstest server", caCert, caKey, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		c.DNSNames = []string{"localhost"}
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	})
	p.ServerCertFile = writePEM(t, dir, "server.pem", "CERTIFICATE", serverCert.Raw)
	p.ServerKeyFile = writeKey(t, dir, "server-key.pem", serverKey)
	p.server = tls.Certificate{Certificate: [][]byte{serverCert.Raw}, PrivateKey: serverKey, Leaf: serverCert}

	clientKey, clientCert := newCert(t, "doraflow", caCert, caKey, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	p.ClientCertFile = writePEM(t, dir, "client.pem", "CERTIFICATE", clientCert.Raw)
	p.ClientKeyFile = writeKey(t, dir, "client-key.pem", clientKey)
	return p
}

// TLS is a Start option: the server requires TLS with the PKI's server certificate and, when
// verifyClients is set, a client certificate signed by the PKI's CA (mutual TLS).
func (p *PKI) TLS(verifyClients bool) func(*server.Options) {
	return func(o *server.Options) {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{p.server}}
		if verifyClients {
			tc.ClientCAs = p.pool
			tc.ClientAuth = tls.RequireAndVerifyClientCert
		}
		o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, verifyClients, tc, 5
	}
}

func newCert(t testing.TB, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, shape func(*x509.Certificate)) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"doraflow tests"}},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	shape(tmpl)
	signer, signerKey := parent, parentKey
	if parent == nil {
		signer, signerKey = tmpl, key // self-signed
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func writeKey(t testing.TB, dir, name string, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name, "PRIVATE KEY", der)
}

func writePEM(t testing.TB, dir, name, kind string, der []byte) string {
	t.Helper()
	return writeFile(t, dir, name, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}))
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Operator is a throwaway NATS operator for decentralized authentication (JWT and nkeys, as nsc
// makes them): one account with JetStream, whose users authenticate with .creds files.
type Operator struct {
	t          testing.TB
	dir        string
	operator   *jwt.OperatorClaims
	opJWT      string
	accounts   map[string]string // public key → account JWT
	accountKey nkeys.KeyPair
	resolver   *server.MemAccResolver
	systemPub  string
}

// NewOperator mints an operator, a system account and an application account with unlimited
// JetStream, all signed in memory.
func NewOperator(t testing.TB) *Operator {
	t.Helper()
	opKey := must(t, nkeys.CreateOperator)
	opPub := must(t, opKey.PublicKey)
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "natstest"
	o := &Operator{t: t, dir: t.TempDir(), resolver: &server.MemAccResolver{}, accounts: map[string]string{}}
	token, err := oc.Encode(opKey) // also fills in the issuer and ID the server checks
	if err != nil {
		t.Fatal(err)
	}
	o.operator, o.opJWT = oc, token

	sysKey := must(t, nkeys.CreateAccount)
	o.systemPub = must(t, sysKey.PublicKey)
	o.store(opKey, jwt.NewAccountClaims(o.systemPub), "SYS")

	o.accountKey = must(t, nkeys.CreateAccount)
	ac := jwt.NewAccountClaims(must(t, o.accountKey.PublicKey))
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	o.store(opKey, ac, "DORAFLOW")
	return o
}

func (o *Operator) store(opKey nkeys.KeyPair, ac *jwt.AccountClaims, name string) {
	o.t.Helper()
	ac.Name = name
	token, err := ac.Encode(opKey)
	if err != nil {
		o.t.Fatal(err)
	}
	if err := o.resolver.Store(ac.Subject, token); err != nil {
		o.t.Fatal(err)
	}
	o.accounts[ac.Subject] = token
}

// ResolverConfig is the server configuration for this operator as
// `nsc generate config --mem-resolver` writes it: operator, system account and preloaded accounts,
// for a nats.conf that includes it.
func (o *Operator) ResolverConfig() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "operator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n", o.opJWT, o.systemPub)
	for _, pub := range slices.Sorted(maps.Keys(o.accounts)) {
		fmt.Fprintf(&b, "  %s: %s\n", pub, o.accounts[pub])
	}
	b.WriteString("}\n")
	return []byte(b.String())
}

// Option is a Start option: the server trusts only this operator, and resolves its accounts from
// memory (operator mode; plain users, tokens and nkeys are off).
func (o *Operator) Option() func(*server.Options) {
	return func(opts *server.Options) {
		opts.TrustedOperators = []*jwt.OperatorClaims{o.operator}
		opts.AccountResolver = o.resolver
		opts.SystemAccount = o.systemPub
	}
}

// UserCreds mints a user of the application account and writes its .creds file (the JWT and the
// user's nkey seed), as `nsc generate creds` does. It returns the file's path.
func (o *Operator) UserCreds(name string) string {
	o.t.Helper()
	userKey := must(o.t, nkeys.CreateUser)
	uc := jwt.NewUserClaims(must(o.t, userKey.PublicKey))
	uc.Name = name
	token, err := uc.Encode(o.accountKey)
	if err != nil {
		o.t.Fatal(err)
	}
	seed := must(o.t, userKey.Seed)
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		o.t.Fatal(err)
	}
	return writeFile(o.t, o.dir, name+".creds", creds)
}

func must[T any](t testing.TB, f func() (T, error)) T {
	t.Helper()
	v, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
