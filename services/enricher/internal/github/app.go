package github

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// AppCredentials authenticate as a GitHub App installation: the client signs a short-lived JWT
// (RS256) with the app's private key, exchanges it for an installation token
// (POST /app/installations/{id}/access_tokens) and renews the token before it expires.
type AppCredentials struct {
	AppID          int64
	InstallationID int64
	// PrivateKey is the app's PEM-encoded RSA key (PKCS#1 "RSA PRIVATE KEY" or PKCS#8 "PRIVATE KEY").
	PrivateKey []byte
}

// ParsePrivateKey reads a PEM-encoded RSA private key.
func ParsePrivateKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("github app private key: no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("github app private key: not PKCS#1 or PKCS#8: %w", err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("github app private key: %T is not an RSA key", k)
	}
	return rk, nil
}

type appTransport struct {
	appID        int64
	installation int64
	key          *rsa.PrivateKey
	tokenURL     string
	next         http.RoundTripper
	http         *http.Client
	c            *Client // observer and clock

	mu      sync.Mutex
	token   string
	expires time.Time
}

func newAppTransport(creds AppCredentials, base *url.URL, next http.RoundTripper, timeout time.Duration, c *Client) (*appTransport, error) {
	if creds.AppID <= 0 || creds.InstallationID <= 0 {
		return nil, errors.New("github app: app ID and installation ID must be positive")
	}
	key, err := ParsePrivateKey(creds.PrivateKey)
	if err != nil {
		return nil, err
	}
	u := *base
	u.Path += "app/installations/" + strconv.FormatInt(creds.InstallationID, 10) + "/access_tokens"
	return &appTransport{appID: creds.AppID, installation: creds.InstallationID, key: key, tokenURL: u.String(), next: next,
		http: &http.Client{Transport: next, Timeout: timeout}, c: c}, nil
}

// RoundTrip adds the installation token to req.
func (t *appTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.installationToken(req.Context())
	if err != nil {
		return nil, err
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "token "+tok)
	return t.next.RoundTrip(r)
}

// installationToken returns a token valid for at least another minute, exchanging a new JWT when
// needed. Concurrent callers share one exchange.
func (t *appTransport) installationToken(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.c.now()
	if t.token != "" && now.Add(time.Minute).Before(t.expires) {
		return t.token, nil
	}
	jwt, err := t.jwt(now)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.tokenURL, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("Authorization", "Bearer "+jwt)
	resp, err := t.http.Do(req)
	if err != nil {
		t.c.obs.Call(EndpointAppToken, OutcomeError)
		return "", fmt.Errorf("github app: installation token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.c.obs.Call(EndpointAppToken, OutcomeError)
		return "", fmt.Errorf("github app: installation token: %w", err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &e) // the status alone is enough when the body is not JSON
		var cerr error
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusNotFound:
			// GitHub refuses the app's JWT (a wrong key or app ID), or knows no such installation.
			cerr = &ConfigError{Status: resp.StatusCode, Reason: fmt.Sprintf("installation %d of app %d: %s",
				t.installation, t.appID, e.Message), Hint: hintApp}
		default:
			cerr = t.c.classify(resp, fmt.Errorf("status %d: %s", resp.StatusCode, e.Message))
		}
		t.c.obs.Call(EndpointAppToken, outcome(resp, cerr))
		return "", fmt.Errorf("github app: installation token: %w", cerr)
	}
	var tok struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		t.c.obs.Call(EndpointAppToken, OutcomeError)
		return "", fmt.Errorf("github app: installation token: malformed answer: %w", err)
	}
	if tok.Token == "" {
		t.c.obs.Call(EndpointAppToken, OutcomeError)
		return "", errors.New("github app: installation token: answer without a token")
	}
	t.c.obs.Call(EndpointAppToken, OutcomeOK)
	t.token, t.expires = tok.Token, tok.ExpiresAt
	return t.token, nil
}

// jwt returns the app's JSON Web Token: RS256, issued a minute in the past against clock drift,
// valid for nine minutes (GitHub allows ten).
func (t *appTransport) jwt(now time.Time) (string, error) {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	claims, err := json.Marshal(map[string]any{
		"iat": now.Add(-time.Minute).Unix(),
		"exp": now.Add(9 * time.Minute).Unix(),
		"iss": strconv.FormatInt(t.appID, 10),
	})
	if err != nil {
		return "", err
	}
	signing := header + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, t.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("github app: sign JWT: %w", err)
	}
	return signing + "." + enc.EncodeToString(sig), nil
}
