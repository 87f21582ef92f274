package logging

import (
	"net/url"
	"regexp"
	"strings"
)

// credentialParams are fragments of query and path-parameter names whose values are credentials.
var credentialParams = []string{"token", "secret", "password", "passwd", "pwd", "key", "auth", "sig",
	"credential", "session", "code", "jwt", "nkey", "seed", "bearer"}

func isCredentialName(name string) bool {
	n := strings.ToLower(name)
	for _, s := range credentialParams {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

const redacted = "redacted"

// RedactURL removes credentials from a URL, or from a comma-separated list of URLs such as a NATS
// server list, before it reaches a log, an error, an event, a header or a metric: user info (name and
// password), the values of query parameters and ";" path parameters whose names look like credentials
// (token, access_token, key, password, sig, …), and fragments (OAuth implicit flows put tokens
// there). Input that does not parse as a URL is replaced entirely, since it may be a secret itself.
//
// It is the one redaction path for URLs: RedactText applies it to every URL inside free text.
func RedactURL(raw string) string {
	if !strings.Contains(raw, ",") {
		return redactOne(raw)
	}
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		lead := len(p) - len(strings.TrimLeft(p, " \t"))
		parts[i] = p[:lead] + redactOne(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

func redactOne(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme == "" && u.Host == "" && strings.Contains(raw, "@")) {
		return "[unparseable url]"
	}
	if u.User != nil {
		u.User = url.User(redacted)
	}
	if u.Fragment != "" || u.RawFragment != "" {
		u.Fragment, u.RawFragment = redacted, ""
	}
	if strings.Contains(u.Path, ";") {
		segs := strings.Split(u.Path, "/")
		for i, seg := range segs {
			name, params, ok := strings.Cut(seg, ";")
			if !ok {
				continue
			}
			kvs := strings.Split(params, ";")
			for j, kv := range kvs {
				if k, _, hasValue := strings.Cut(kv, "="); hasValue && isCredentialName(k) {
					kvs[j] = k + "=" + redacted
				}
			}
			segs[i] = name + ";" + strings.Join(kvs, ";")
		}
		u.Path, u.RawPath = strings.Join(segs, "/"), ""
	}
	if u.RawQuery != "" {
		// Rewrite only the credential values and keep the rest byte for byte (order, encoding).
		pairs := strings.Split(u.RawQuery, "&")
		for i, p := range pairs {
			k, _, hasValue := strings.Cut(p, "=")
			name, err := url.QueryUnescape(k)
			if err != nil {
				name = k
			}
			if hasValue && isCredentialName(name) {
				pairs[i] = k + "=" + redacted
			}
		}
		u.RawQuery = strings.Join(pairs, "&")
	}
	return u.String()
}

// urlInText finds URLs with a scheme in free text: error messages quote the URL they failed on.
var urlInText = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>` + "`" + `]+`)

// RedactText applies RedactURL to every URL inside s, such as an error message that quotes the URL
// a request failed on ("Get \"https://u:p@h/x?token=…\": dial tcp …").
func RedactText(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	return urlInText.ReplaceAllStringFunc(s, func(m string) string {
		trail := ""
		for len(m) > 0 && strings.ContainsRune(".,;:)]}", rune(m[len(m)-1])) {
			trail = m[len(m)-1:] + trail
			m = m[:len(m)-1]
		}
		return RedactURL(m) + trail
	})
}
