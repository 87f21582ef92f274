package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/doraflow/doraflow/internal/config"
)

// preflighted is what `doraflow local` runs the services with, after checking each external source.
type preflighted struct {
	config string   // one YAML for every service
	notes  []string // one line per source: what it uses, or why it is disabled
	// getenv is the caller's environment without the variables of the sources found unusable, so a
	// half-configured source cannot stop a service at start.
	getenv func(string) string
}

// preflight checks each external source the way its service would at start, without the network:
// a source that could not start is disabled (in the YAML) with its reason, and the rest keeps running.
func preflight(getenv func(string) string) preflighted {
	var b strings.Builder
	var notes []string
	hidden := map[string]bool{}
	hide := func(names ...string) {
		for _, n := range names {
			hidden[n], hidden[n+"_FILE"] = true, true
		}
	}

	if kc, reason := kubeconfig(getenv); reason != "" {
		b.WriteString("argocd:\n  enabled: false\n")
		notes = append(notes, "argocd-watcher: disabled ("+reason+")")
		hide("KUBECONFIG")
	} else {
		b.WriteString("argocd:\n  enabled: true\n")
		notes = append(notes, "argocd-watcher: watching Argo CD through "+kc)
	}

	if reason := webrcaCredentials(getenv); reason != "" {
		b.WriteString("webrca:\n  enabled: false\n")
		notes = append(notes, "webrca-poller: disabled ("+reason+")")
		hide("OFFLINE_TOKEN", "WEBRCA_CLIENT_ID", "WEBRCA_CLIENT_SECRET")
	} else {
		b.WriteString("webrca:\n  enabled: true\n")
		notes = append(notes, "webrca-poller: polling WebRCA")
	}

	if u, reason := devlake(getenv); reason != "" {
		b.WriteString("integration:\n  devlake:\n    enabled: false\n    project_id: \"1\"\n")
		notes = append(notes, "devlake-sink: disabled ("+reason+")")
		hide("DEVLAKE_WEBHOOK_TOKEN")
	} else {
		fmt.Fprintf(&b, "integration:\n  devlake:\n    enabled: true\n    base_url: %q\n    project_id: \"1\"\n", u)
		notes = append(notes, "devlake-sink: posting to "+u+" (project 1)")
	}

	if note, drop := github(getenv); note != "" {
		notes = append(notes, note)
		hide(drop...)
	}
	return preflighted{config: b.String(), notes: notes, getenv: func(k string) string {
		if hidden[k] {
			return ""
		}
		return getenv(k)
	}}
}

// kubeconfig returns the kubeconfig argocd-watcher would use, or why it cannot.
func kubeconfig(getenv func(string) string) (string, string) {
	kc := getenv("KUBECONFIG")
	if kc == "" {
		home := getenv("HOME")
		if home == "" {
			return "", "no KUBECONFIG and no ~/.kube/config"
		}
		if _, err := os.Stat(filepath.Join(home, ".kube", "config")); err != nil {
			return "", "no KUBECONFIG and no ~/.kube/config"
		}
		kc = filepath.Join(home, ".kube", "config")
	} else {
		var missing []string
		paths := filepath.SplitList(kc)
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				missing = append(missing, p)
			}
		}
		if len(missing) == len(paths) {
			return "", fmt.Sprintf("KUBECONFIG=%s: no such file", kc)
		}
	}
	rules := &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(kc)}
	cfg, err := rules.Load()
	if err != nil {
		return "", fmt.Sprintf("kubeconfig %s: %s", kc, oneLine(err.Error(), 160))
	}
	ctxName := cfg.CurrentContext
	ctx, ok := cfg.Contexts[ctxName]
	switch {
	case ctxName == "":
		return "", fmt.Sprintf("kubeconfig %s has no current-context", kc)
	case !ok:
		return "", fmt.Sprintf("kubeconfig %s: current-context %q is not defined", kc, ctxName)
	case cfg.Clusters[ctx.Cluster] == nil || cfg.Clusters[ctx.Cluster].Server == "":
		return "", fmt.Sprintf("kubeconfig %s: context %q names no cluster with a server", kc, ctxName)
	}
	return kc + " (context " + ctxName + ")", ""
}

// secret reads a secret the way the services do (NAME or NAME_FILE) and returns why it is unusable.
func secret(getenv func(string) string, name string) (set bool, problem string) {
	env := config.NewEnv(getenv)
	s := env.Secret(name, false, name)
	if err := env.Err(); err != nil {
		return false, oneLine(strings.TrimPrefix(err.Error(), "environment: "), 160)
	}
	return s.IsSet(), ""
}

// webrcaCredentials says why webrca-poller could not authenticate ("" when it can).
func webrcaCredentials(getenv func(string) string) string {
	offline, p1 := secret(getenv, "OFFLINE_TOKEN")
	clientSecret, p2 := secret(getenv, "WEBRCA_CLIENT_SECRET")
	clientID := getenv("WEBRCA_CLIENT_ID")
	switch {
	case p1 != "":
		return p1
	case offline:
		return ""
	case p2 != "":
		return p2
	case clientID != "" && !clientSecret:
		return "WEBRCA_CLIENT_ID is set but WEBRCA_CLIENT_SECRET (or _FILE) is not"
	case clientID == "" && clientSecret:
		return "WEBRCA_CLIENT_SECRET is set but WEBRCA_CLIENT_ID is not"
	case clientID == "":
		return "set OFFLINE_TOKEN or WEBRCA_CLIENT_ID/WEBRCA_CLIENT_SECRET"
	}
	return ""
}

// devlake returns DevLake's URL, or why devlake-sink could not post there.
func devlake(getenv func(string) string) (string, string) {
	raw := getenv("DEVLAKE_URL")
	token, problem := secret(getenv, "DEVLAKE_WEBHOOK_TOKEN")
	switch {
	case raw == "" && token:
		return "", "DEVLAKE_WEBHOOK_TOKEN is set but DEVLAKE_URL is not"
	case raw == "":
		return "", "set DEVLAKE_URL and DEVLAKE_WEBHOOK_TOKEN"
	case problem != "":
		return "", problem
	case !token:
		return "", "DEVLAKE_URL is set but DEVLAKE_WEBHOOK_TOKEN (or _FILE) is not"
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Sprintf("DEVLAKE_URL=%q is not an http(s) URL", raw)
	}
	return raw, ""
}

// github says how the enricher calls GitHub, and which variables to drop so a broken credential makes
// it run anonymously instead of failing at start.
func github(getenv func(string) string) (string, []string) {
	const anonymous = "enricher: no GITHUB_TOKEN: GitHub is called anonymously, at most 60 requests per hour " +
		"(commits of many deployments will be missing); set GITHUB_TOKEN or a GitHub App"
	token, problem := secret(getenv, "GITHUB_TOKEN")
	appID := getenv("GITHUB_APP_ID")
	app := []string{"GITHUB_APP_ID", "GITHUB_APP_INSTALLATION_ID", "GITHUB_APP_PRIVATE_KEY"}
	switch {
	case problem != "":
		return "enricher: " + problem + ": ignored; " + strings.TrimPrefix(anonymous, "enricher: no GITHUB_TOKEN: "),
			append([]string{"GITHUB_TOKEN"}, app...)
	case token && appID != "":
		return "enricher: GITHUB_TOKEN and GITHUB_APP_ID are both set: using GITHUB_TOKEN", app
	case token:
		return "", nil
	case appID != "":
		key, keyProblem := secret(getenv, "GITHUB_APP_PRIVATE_KEY")
		if err := errors.Join(errIf(getenv("GITHUB_APP_INSTALLATION_ID") == "", "GITHUB_APP_INSTALLATION_ID is not set"),
			errIf(keyProblem != "", keyProblem), errIf(!key && keyProblem == "", "GITHUB_APP_PRIVATE_KEY (or _FILE) is not set")); err != nil {
			return "enricher: GitHub App ignored (" + strings.ReplaceAll(err.Error(), "\n", "; ") + "); " +
				strings.TrimPrefix(anonymous, "enricher: no GITHUB_TOKEN: "), app
		}
		return "", nil
	}
	return anonymous, nil
}

func errIf(cond bool, msg string) error {
	if cond {
		return errors.New(msg)
	}
	return nil
}
