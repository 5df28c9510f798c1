// Package registrytest runs a throw-away OCI distribution registry for tests.
//
// It starts Debian's /usr/bin/docker-registry (distribution 2.8) on a free
// loopback port with its own configuration and storage under t.TempDir(), so
// tests that push and pull images need no network and no shared state.
//
// StartWithAuth runs one that asks for a user and password (htpasswd basic
// auth, the file written with golang.org/x/crypto/bcrypt).
package registrytest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Binary is the registry executable. The project's scripts/deps.sh installs
// it, so its absence is a broken setup, not a reason to skip.
const Binary = "/usr/bin/docker-registry"

const (
	readyTimeout = 10 * time.Second
	// startAttempts bounds the retries for the race between picking a free
	// port (listen on :0, close) and the registry binding it.
	startAttempts = 3
)

// Registry is a running registry. It is stopped by the test's cleanup.
type Registry struct {
	// Host is "127.0.0.1:PORT", the form image references use.
	Host string
	// Dir is the registry's storage root directory (filesystem driver).
	Dir string

	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait has returned
	out  *syncBuffer
	// user and password, when the registry asks for them.
	user, password string
}

// URL returns the plain-HTTP URL of path on the registry, e.g. URL("/v2/").
func (r *Registry) URL(path string) string {
	return "http://" + r.Host + path
}

// Start starts a registry without authentication and returns once
// GET /v2/ answers 200. The registry is killed when the test ends.
func Start(t testing.TB) *Registry {
	t.Helper()
	return start(t, "", "")
}

// StartWithAuth starts a registry that answers only requests with the given
// user and password (HTTP basic auth from an htpasswd file).
func StartWithAuth(t testing.TB, user, password string) *Registry {
	t.Helper()
	if user == "" || password == "" {
		t.Fatal("registrytest: StartWithAuth needs a user and a password")
	}
	return start(t, user, password)
}

func start(t testing.TB, user, password string) *Registry {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("docker-registry not installed: run scripts/deps.sh (%v)", err)
	}
	base := t.TempDir()
	dir := filepath.Join(base, "storage")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("registrytest: %v", err)
	}
	htpasswd := ""
	if user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatalf("registrytest: %v", err)
		}
		htpasswd = filepath.Join(base, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatalf("registrytest: %v", err)
		}
	}
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("registrytest: pick a port: %v", err)
		}
		host := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		conf := filepath.Join(base, fmt.Sprintf("config-%d.yml", attempt))
		if err := os.WriteFile(conf, []byte(config(host, dir, htpasswd)), 0o644); err != nil {
			t.Fatalf("registrytest: %v", err)
		}
		r, err := launch(host, dir, conf)
		if err != nil {
			t.Fatalf("registrytest: start %s: %v", Binary, err)
		}
		r.user, r.password = user, password
		// Registered before waiting, so a registry that never gets ready is
		// still killed.
		t.Cleanup(r.stop)
		err = r.waitReady(readyTimeout)
		if err == nil {
			return r
		}
		lastErr = fmt.Errorf("%v\nregistry output:\n%s", err, r.out.String())
		r.stop()
		// Only a lost port race is worth another try; anything else
		// (bad config, broken binary) would fail the same way again.
		if !strings.Contains(r.out.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("registrytest: registry did not become ready: %v", lastErr)
	return nil
}

// config renders the registry configuration. Everything a test does not
// need is off: the access log (noise in test output) and the storage health
// check (it would only add background I/O).
func config(host, dir, htpasswd string) string {
	auth := ""
	if htpasswd != "" {
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: registrytest\n    path: %s\n", strconv.Quote(htpasswd))
	}
	return auth + fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  # A fixed secret keeps the registry from warning about a random one.
  secret: registrytest
`, strconv.Quote(dir), host)
}

// freePort asks the kernel for an unused loopback port. The port is free
// only until someone else takes it, hence the retries in Start.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func launch(host, dir, conf string) (*Registry, error) {
	out := &syncBuffer{}
	cmd := exec.Command(Binary, "serve", conf)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.Env = registryEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// If the test binary dies without running cleanups (e.g. a
		// timeout panic), do not leave a registry behind.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &Registry{Host: host, Dir: dir, cmd: cmd, done: make(chan struct{}), out: out}
	go func() {
		_ = cmd.Wait()
		close(r.done)
	}()
	return r, nil
}

// registryEnv is the test's environment without REGISTRY_* variables:
// distribution lets those override any configuration key, and a stray one
// from the developer's shell must not change what the test gets.
func registryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

func (r *Registry) waitReady(timeout time.Duration) error {
	client := &http.Client{
		Timeout: time.Second,
		// No proxy: the registry is on loopback, and an HTTP_PROXY from
		// the environment must not see (or break) the probe.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-r.done:
			return fmt.Errorf("registry exited early: %v", r.cmd.ProcessState)
		default:
		}
		req, err := http.NewRequest(http.MethodGet, r.URL("/v2/"), nil)
		if err != nil {
			return err
		}
		if r.user != "" {
			req.SetBasicAuth(r.user, r.password)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	if last == nil {
		last = errors.New("no answer")
	}
	return fmt.Errorf("not ready after %v: %v", timeout, last)
}

// stop kills the registry and waits for it. It is safe to call twice.
func (r *Registry) stop() {
	select {
	case <-r.done:
		return
	default:
	}
	_ = r.cmd.Process.Kill()
	<-r.done
}

// syncBuffer collects the registry's output; exec copies stdout and stderr
// from separate goroutines while the test may read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
