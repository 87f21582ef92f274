package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/doraflow/doraflow/internal/natstest"
	"github.com/doraflow/doraflow/internal/servicetest"
	"github.com/doraflow/doraflow/internal/wait"
)

var services = []string{"argocd-watcher", "webrca-poller", "enricher", "devlake-sink", "metrics-exporter"}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds every service once per test binary run, into a temporary directory.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "doraflow-e2e-bin-")
		if buildErr != nil {
			return
		}
		for _, s := range services {
			cmd := exec.Command("go", "build", "-ldflags", "-X main.version=e2e", "-o", filepath.Join(binDir, s), ".")
			cmd.Dir = filepath.Join("..", "..", "services", s)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %w\n%s", s, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

type proc struct {
	name string
	cmd  *exec.Cmd
	ops  string
	out  *servicetest.Buffer
	done chan error
}

func start(t *testing.T, bin, name string, env ...string) *proc {
	t.Helper()
	addr := servicetest.FreeAddr(t)
	out := &servicetest.Buffer{}
	cmd := exec.Command(filepath.Join(bin, name))
	cmd.Env = append(os.Environ(), append([]string{"OPS_ADDR=" + addr, "LOG_LEVEL=debug"}, env...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, ops: "http://" + addr, out: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

// TestBinariesStartAndStopCleanlyOnSIGTERM runs every service binary against one NATS server, waits
// until each is ready, sends SIGTERM and requires exit status 0 within 10 s, as Kubernetes would.
func TestBinariesStartAndStopCleanlyOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the five binaries")
	}
	bin := binaries(t)
	srv := natstest.Start(t)
	var procs []*proc
	for _, s := range services {
		procs = append(procs, start(t, bin, s, "NATS_URL="+srv.URL()))
	}
	for _, p := range procs {
		waitReady(t, p)
		if code, body, err := servicetest.HTTPGet(t.Context(), p.ops+"/"); err != nil || code != 200 || !strings.Contains(body, `"version": "e2e"`) {
			t.Errorf("%s GET / = %d %s %v", p.name, code, body, err)
		}
	}
	for _, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range procs {
		select {
		case err := <-p.done:
			if err != nil {
				t.Errorf("%s exited with %v after SIGTERM, want status 0\n%s", p.name, err, p.out)
			}
			if !strings.Contains(p.out.String(), `"message":"stopped"`) {
				t.Errorf("%s did not log a clean stop:\n%s", p.name, p.out)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s still running 10s after SIGTERM\n%s", p.name, p.out)
		}
	}
}

// TestBinaryFailsFastOnBadConfig checks that a bad environment is reported in full, at once.
func TestBinaryFailsFastOnBadConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the five binaries")
	}
	bin := binaries(t)
	p := start(t, bin, "enricher", "JETSTREAM_REPLICAS=7", "LOG_LEVEL=loud", "NATS_USER=u")
	select {
	case err := <-p.done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 { // 2: a configuration error
			t.Fatalf("exit = %v, want status 2", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("enricher did not exit on a bad environment")
	}
	for _, want := range []string{`JETSTREAM_REPLICAS="7" is not an integer from 1 to 5`, "NATS_USER and NATS_PASSWORD go together"} {
		if !strings.Contains(p.out.String(), want) {
			t.Errorf("output misses %q:\n%s", want, p.out)
		}
	}
}

// waitReady waits until a service process answers /readyz with 200, failing if it exits first.
func waitReady(t *testing.T, p *proc) {
	t.Helper()
	wait.For(t, 30*time.Second, func() error {
		select {
		case err := <-p.done:
			t.Fatalf("%s exited: %v\n%s", p.name, err, p.out)
		default:
		}
		code, body, err := servicetest.HTTPGet(t.Context(), p.ops+"/readyz")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("%s /readyz %d: %s", p.name, code, body)
		}
		return nil
	})
}
