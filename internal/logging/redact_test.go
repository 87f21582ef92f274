package logging

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"userinfo", "nats://u:p@host:4222", "nats://redacted@host:4222"},
		{"user only (a token)", "nats://s3cr3t@host:4222", "nats://redacted@host:4222"},
		{"query credential", "https://h/x?access_token=abc&page=2", "https://h/x?access_token=redacted&page=2"},
		{"query order and encoding kept", "https://h/x?b=1&Sig=a%2Fb&a=%20", "https://h/x?b=1&Sig=redacted&a=%20"},
		{"server list", "nats://alice:pw1@h1:4222,nats://bob:pw2@h2:4222", "nats://redacted@h1:4222,nats://redacted@h2:4222"},
		{"server list with spaces", "nats://h1:4222, nats://bob:pw2@h2:4222", "nats://h1:4222, nats://redacted@h2:4222"},
		{"fragment", "https://h/cb#access_token=abc", "https://h/cb#redacted"},
		{"path parameters", "https://h/a;jsessionid=abc;lang=en/b", "https://h/a;jsessionid=redacted;lang=en/b"},
		{"path parameter token", "https://h/api;token=abc", "https://h/api;token=redacted"},
		{"password param", "https://h/?password=x&user=bob", "https://h/?password=redacted&user=bob"},
		{"unparseable", "://bad", "[unparseable url]"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactURL(tt.in); got != tt.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRedactText(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no url", "connection refused", "connection refused"},
		{"quoted url in error", `Post "https://u:pw@lake/api?token=t1&x=1": dial tcp: refused`,
			`Post "https://redacted@lake/api?token=redacted&x=1": dial tcp: refused`},
		{"trailing punctuation", "connect to nats://a:pw@h:4222.", "connect to nats://redacted@h:4222."},
		{"two urls", "nats://a:pw1@h1 then nats://b:pw2@h2", "nats://redacted@h1 then nats://redacted@h2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactText(tt.in); got != tt.want {
				t.Errorf("RedactText(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzRedactURL(f *testing.F) {
	for _, s := range []string{"nats://alice:pw1secret@h1:4222,nats://bob:pw2secret@h2:4222", "https://u:hunter22@h/a;token=x?key=y#z", "://bad", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := RedactURL(s)
		for _, part := range strings.Split(s, ",") {
			u, err := url.Parse(strings.TrimSpace(part))
			if err != nil || u.User == nil {
				continue
			}
			// A password that appears only once in the input must be gone from the output.
			if pw, ok := u.User.Password(); ok && len(pw) >= 4 && strings.Count(s, pw) == 1 && strings.Contains(out, pw) {
				t.Errorf("RedactURL(%q) = %q keeps the password %q", s, out, pw)
			}
		}
	})
}
