package argocd

import (
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ErrNoKubeconfig says that neither a kubeconfig file nor an in-cluster service account was found.
var ErrNoKubeconfig = errors.New("no Kubernetes configuration: pass --kubeconfig (or set KUBECONFIG), or run in a pod with a service account")

// RESTConfig returns the client configuration: the kubeconfig file (with its current context, or
// the named one) when a path is given, else the in-cluster service account. It never falls back to
// ~/.kube/config silently, so a misconfigured deployment fails with ErrNoKubeconfig instead of
// watching the wrong cluster.
func RESTConfig(kubeconfig, kubeContext string) (*rest.Config, error) {
	if kubeconfig == "" {
		if kubeContext != "" {
			return nil, fmt.Errorf("--context %q needs a kubeconfig (--kubeconfig or KUBECONFIG)", kubeContext)
		}
		cfg, err := rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, ErrNoKubeconfig
		}
		if err != nil {
			return nil, fmt.Errorf("in-cluster Kubernetes configuration: %w", err)
		}
		return tune(cfg), nil
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: kubeContext}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	return tune(cfg), nil
}

func tune(cfg *rest.Config) *rest.Config {
	cfg.UserAgent = "doraflow-argocd-watcher"
	// One list per namespace at start and watches afterwards: the defaults (5 QPS) only slow the
	// initial sync of many namespaces.
	cfg.QPS, cfg.Burst = 20, 40
	return cfg
}
