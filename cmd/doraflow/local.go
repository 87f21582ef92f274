package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// localOptions configure `doraflow local`.
type localOptions struct {
	binDir   string
	dataDir  string
	natsAddr string
	opsBase  int
	config   string
	logDir   string
	ready    time.Duration
	// onReady is called once every service answers /readyz (tests use it).
	onReady func(natsURL string, ops map[string]string)
}

// local runs an embedded NATS server with JetStream and every service as a child process, until
// ctx is cancelled (Ctrl-C); then it stops the services (each drains) and the server, in that order.
func local(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	return runLocal(ctx, args, getenv, out, nil)
}

func runLocal(ctx context.Context, args []string, getenv func(string) string, out io.Writer,
	onReady func(natsURL string, ops map[string]string)) error {
	fs := flag.NewFlagSet("doraflow local", flag.ContinueOnError)
	fs.SetOutput(out)
	o := localOptions{onReady: onReady}
	fs.StringVar(&o.binDir, "bin", "bin", "`directory` holding the service binaries (make build)")
	fs.StringVar(&o.dataDir, "data", ".run/nats", "JetStream storage `directory`")
	fs.StringVar(&o.natsAddr, "nats", "127.0.0.1:4222", "NATS listen `address` (the NATS CLI attaches here)")
	fs.IntVar(&o.opsBase, "ops-port", 8081, "first ops `port`; services get consecutive ports (0: any free port)")
	fs.StringVar(&o.config, "config", "", "a doraflow YAML `file` for every service; default: generated from the environment")
	fs.StringVar(&o.logDir, "logs", ".run/logs", "`directory` for the services' logs")
	fs.DurationVar(&o.ready, "ready-timeout", 60*time.Second, "how long to wait for every service to be ready")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return o.run(ctx, getenv, out)
}

func (o localOptions) run(ctx context.Context, getenv func(string) string, out io.Writer) error {
	for _, s := range services {
		if _, err := os.Stat(filepath.Join(o.binDir, s)); err != nil {
			return fmt.Errorf("service binary %s missing in %s: run `make build` first", s, o.binDir)
		}
	}
	for _, d := range []string{o.dataDir, o.logDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	ns, err := startNATS(o.natsAddr, o.dataDir)
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	natsURL := ns.ClientURL()
	fmt.Fprintf(out, "NATS JetStream  %s  (data in %s; try: nats sub 'doraflow.>')\n", natsURL, o.dataDir)

	configPath := o.config
	if configPath == "" {
		cfg, notes := localConfig(getenv)
		configPath = filepath.Join(filepath.Dir(o.logDir), "config.yaml")
		if err := os.WriteFile(configPath, []byte(cfg), 0o600); err != nil {
			return err
		}
		for _, n := range notes {
			fmt.Fprintln(out, n)
		}
	}

	procs, ops, err := startServices(ctx, launch{binDir: o.binDir, logDir: o.logDir, config: configPath, opsBase: o.opsBase,
		env: func(addr string) []string { return childEnv(getenv, natsURL, addr) }, ready: o.ready,
		started: func(c *child, addr string) {
			fmt.Fprintf(out, "%-17s http://%s/  (/metrics /readyz /api/v1/health; log %s)\n", c.name, addr, c.logPath)
		}})
	defer stopAll(procs, out)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "doraflow is running. Ctrl-C stops everything.")
	if o.onReady != nil {
		o.onReady(natsURL, ops)
	}
	select {
	case <-ctx.Done():
		return nil
	case c := <-exited(procs):
		return fmt.Errorf("%s exited: %w (see %s)", c.name, c.err, c.logPath)
	}
}

// localConfig writes one YAML for every service, enabling each external source only when its
// configuration is present, and says what is disabled.
func localConfig(getenv func(string) string) (string, []string) {
	var b strings.Builder
	var notes []string
	kubeconfig := getenv("KUBECONFIG")
	if home := getenv("HOME"); kubeconfig == "" && home != "" {
		if _, err := os.Stat(filepath.Join(home, ".kube", "config")); err == nil {
			kubeconfig = filepath.Join(home, ".kube", "config")
		}
	}
	if kubeconfig != "" {
		b.WriteString("argocd:\n  enabled: true\n")
		notes = append(notes, "argocd-watcher: watching Argo CD through "+kubeconfig)
	} else {
		b.WriteString("argocd:\n  enabled: false\n")
		notes = append(notes, "argocd-watcher: disabled (no KUBECONFIG and no ~/.kube/config)")
	}
	if getenv("OFFLINE_TOKEN") != "" || getenv("OFFLINE_TOKEN_FILE") != "" || getenv("WEBRCA_CLIENT_ID") != "" {
		b.WriteString("webrca:\n  enabled: true\n")
		notes = append(notes, "webrca-poller: polling WebRCA")
	} else {
		b.WriteString("webrca:\n  enabled: false\n")
		notes = append(notes, "webrca-poller: disabled (set OFFLINE_TOKEN or WEBRCA_CLIENT_ID/WEBRCA_CLIENT_SECRET)")
	}
	if u := getenv("DEVLAKE_URL"); u != "" {
		fmt.Fprintf(&b, "integration:\n  devlake:\n    enabled: true\n    base_url: %q\n    project_id: \"1\"\n", u)
		notes = append(notes, "devlake-sink: posting to "+u)
	} else {
		b.WriteString("integration:\n  devlake:\n    enabled: false\n    project_id: \"1\"\n")
		notes = append(notes, "devlake-sink: disabled (set DEVLAKE_URL and DEVLAKE_WEBHOOK_TOKEN)")
	}
	if getenv("GITHUB_TOKEN") == "" && getenv("GITHUB_TOKEN_FILE") == "" && getenv("GITHUB_APP_ID") == "" {
		notes = append(notes, "enricher: no GITHUB_TOKEN: anonymous GitHub requests (60 per hour)")
	}
	return b.String(), notes
}

// childEnv passes the caller's environment through (tokens, KUBECONFIG) and sets the local endpoints.
func childEnv(getenv func(string) string, natsURL, opsAddr string) []string {
	env := []string{"NATS_URL=" + natsURL, "OPS_ADDR=" + opsAddr, "JETSTREAM_REPLICAS=1"}
	for _, k := range []string{"PATH", "HOME", "KUBECONFIG", "LOG_LEVEL", "OFFLINE_TOKEN", "OFFLINE_TOKEN_FILE",
		"WEBRCA_CLIENT_ID", "WEBRCA_CLIENT_SECRET", "WEBRCA_CLIENT_SECRET_FILE", "GITHUB_TOKEN", "GITHUB_TOKEN_FILE",
		"GITHUB_APP_ID", "GITHUB_APP_INSTALLATION_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_PRIVATE_KEY_FILE",
		"DEVLAKE_WEBHOOK_TOKEN", "DEVLAKE_WEBHOOK_TOKEN_FILE"} {
		if v := getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func startNATS(addr, dir string) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--nats %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("--nats %q: bad port", addr)
	}
	if port == 0 {
		port = -1 // random
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(&server.Options{Host: host, Port: port, JetStream: true, StoreDir: abs,
		ServerName: "doraflow-local", NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("start NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("NATS did not start on %s (is the port in use?)", addr)
	}
	return ns, nil
}

// child is one service process.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	log     *os.File
	done    chan struct{}
	err     error
}

func startChild(ctx context.Context, bin, name, logPath string, args, env []string) (*child, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// Not killed when ctx ends: stopAll sends SIGTERM so the service drains.
	cmd := exec.CommandContext(context.WithoutCancel(ctx), bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group: the terminal's Ctrl-C reaches only doraflow local, which then stops the
	// services in order, each with SIGTERM so it drains.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, log: f, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		_ = f.Close()
		close(c.done)
	}()
	return c, nil
}

func exited(procs []*child) <-chan *child {
	ch := make(chan *child, len(procs))
	for _, c := range procs {
		go func() {
			<-c.done
			ch <- c
		}()
	}
	return ch
}

// stopAll sends SIGTERM to the services in reverse start order and waits up to 15 s for each.
func stopAll(procs []*child, out io.Writer) {
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		c := procs[i]
		select {
		case <-c.done:
			continue
		default:
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-c.done:
				if c.err != nil {
					fmt.Fprintf(out, "%s stopped: %v (see %s)\n", c.name, c.err, c.logPath)
				}
			case <-time.After(15 * time.Second):
				_ = c.cmd.Process.Kill()
				<-c.done
				fmt.Fprintf(out, "%s did not stop within 15s; killed\n", c.name)
			}
		}()
	}
	wg.Wait()
	if len(procs) > 0 {
		fmt.Fprintln(out, "stopped")
	}
}

func waitReady(ctx context.Context, procs []*child, ops map[string]string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, c := range procs {
		for {
			select {
			case <-c.done:
				return fmt.Errorf("%s exited at start: %w (see %s)", c.name, c.err, c.logPath)
			case <-ctx.Done():
				return nil
			default:
			}
			code, err := get(ctx, ops[c.name]+"/readyz")
			if err == nil && code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not ready within %s (see %s)", c.name, timeout, c.logPath)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func get(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

func freeAddr() (string, error) {
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = ln.Close() }()
	if ln.Addr() == nil {
		return "", errors.New("no address")
	}
	return ln.Addr().String(), nil
}
