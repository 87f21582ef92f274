package main

import (
	"context"
	"encoding/json"
	"errors"
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

var localCommand = command{name: "doraflow local", args: "[flags]",
	about: `Runs the whole pipeline on this machine: an embedded NATS JetStream server and the five services
from --bin, each with its ops endpoints (/metrics, /readyz, /healthz, /api/v1/health) on consecutive
ports from --ops-port. Without --config it writes .run/config.yaml from the environment and checks each
external source first: a source that is not configured, or configured only in part (DEVLAKE_URL without
its token, a KUBECONFIG that does not exist), is disabled and says why in one line. It prints
"export NATS_URL=…" and writes the state file the other commands read (` + stateFileHelp + `).
Ctrl-C stops the services in reverse order (each drains), then NATS.`,
	examples: []string{
		"doraflow local                                  # what make run does",
		"DEVLAKE_URL=http://localhost:8080 DEVLAKE_WEBHOOK_TOKEN=… doraflow local",
		"doraflow local --nats 127.0.0.1:0 --ops-port 0  # free ports; doraflow status still finds it",
	}}

func runLocal(ctx context.Context, args []string, getenv func(string) string, out io.Writer,
	onReady func(natsURL string, ops map[string]string)) error {
	fs := localCommand.flags()
	o := localOptions{onReady: onReady}
	fs.StringVar(&o.binDir, "bin", "bin", "`directory` holding the service binaries (make build)")
	fs.StringVar(&o.dataDir, "data", ".run/nats", "JetStream storage `directory`")
	fs.StringVar(&o.natsAddr, "nats", "127.0.0.1:4222", "NATS listen `address` (the NATS CLI attaches here)")
	fs.IntVar(&o.opsBase, "ops-port", 8081, "first ops `port`; services get consecutive ports (0: any free port)")
	fs.StringVar(&o.config, "config", "", "a doraflow YAML `file` for every service; default: generated from the environment")
	fs.StringVar(&o.logDir, "logs", ".run/logs", "`directory` for the services' logs")
	fs.DurationVar(&o.ready, "ready-timeout", 60*time.Second, "how long to wait for every service to be ready, as a Go `duration`")
	if err := localCommand.parse(fs, args, out, 0); err != nil {
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
	childGetenv := getenv
	if configPath == "" {
		pf := preflight(getenv)
		configPath = filepath.Join(filepath.Dir(o.logDir), "config.yaml")
		if err := os.WriteFile(configPath, []byte(pf.config), 0o600); err != nil {
			return err
		}
		for _, n := range pf.notes {
			fmt.Fprintln(out, n)
		}
		childGetenv = pf.getenv
	}

	procs, ops, err := startServices(ctx, launch{binDir: o.binDir, logDir: o.logDir, config: configPath, opsBase: o.opsBase,
		env: func(addr string) []string { return childEnv(childGetenv, natsURL, addr) }, ready: o.ready,
		started: func(c *child, addr string) {
			fmt.Fprintf(out, "%-17s http://%s/  (/metrics /healthz /readyz /api/v1/health; log %s)\n", c.name, addr, c.logPath)
		}})
	defer stopAll(procs, out)
	if err != nil {
		return err
	}
	defer writePipelineState(out, getenv, "local", natsURL, ops)()
	fmt.Fprintln(out, "doraflow is running. Ctrl-C stops everything.")
	if o.onReady != nil {
		o.onReady(natsURL, ops)
	}
	select {
	case <-ctx.Done():
		return nil
	case c := <-exited(procs):
		return fmt.Errorf("%s exited: %w: %s (log %s)", c.name, c.err, lastLogLine(c.logPath), c.logPath)
	}
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
				return fmt.Errorf("%s exited at start: %w: %s (log %s)", c.name, c.err, lastLogLine(c.logPath), c.logPath)
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

// lastLogLine is the reason a service stopped, in one line: the last error it logged, else the last
// line of its log (the error its main printed).
func lastLogLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var entry struct{ Level, Message, Error string }
		if json.Unmarshal([]byte(lines[i]), &entry) != nil {
			if strings.TrimSpace(lines[i]) != "" {
				return oneLine(lines[i], 300)
			}
			continue
		}
		if entry.Level == "error" || entry.Level == "fatal" {
			if entry.Error != "" {
				return oneLine(entry.Message+": "+entry.Error, 300)
			}
			return oneLine(entry.Message, 300)
		}
	}
	return "nothing logged"
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
