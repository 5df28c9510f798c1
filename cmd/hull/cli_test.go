package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hullproject/hull/image"
	"github.com/hullproject/hull/internal/registrytest"
)

// hullBin is the hull binary the tests build once and run as users would.
var hullBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hull-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hullBin = filepath.Join(dir, "hull")
	// hull finds hull-runc and hull-monitor beside itself.
	// Linked as the Makefile links them (static, Go name service), so the
	// tests run what ships.
	static := []string{"-tags", "netgo,osusergo", "-ldflags", "-linkmode external -extldflags -static"}
	goBuild := func(out, pkg string) []string {
		return append(append([]string{"go", "build"}, static...), "-o", out, pkg)
	}
	builds := [][]string{
		goBuild(hullBin, "."),
		goBuild(filepath.Join(dir, "hull-runc"), "../hull-runc"),
		{"gcc", "-static", "-O2", "-o", filepath.Join(dir, "hull-init"), "../hull-init/init.c"},
		{"env", "CGO_ENABLED=0", "go", "build", "-o", filepath.Join(dir, "udpecho"), "./testdata/udpecho"},
	}
	if srcs, _ := filepath.Glob("../hull-monitor/*.c"); len(srcs) > 0 {
		builds = append(builds, append([]string{"gcc", "-static", "-O2", "-o", filepath.Join(dir, "hull-monitor")}, srcs...))
	}
	for _, b := range builds {
		out, err := exec.Command(b[0], b[1:]...).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "%v: %v\n%s", b, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	// The default bridge and hull's nftables table are shared by every
	// store, so no test removes them; the run does, unless they were
	// there before it.
	_, bridgeBefore := net.InterfaceByName("hull0")
	tableBefore := exec.Command("nft", "list", "table", "ip", "hull").Run()
	_, claimsBefore := os.Stat("/run/hull-ipam")
	forward, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	code := m.Run()
	// hull turns forwarding on for its networks, as Docker does; the
	// test run puts the machine back as it found it.
	if len(forward) > 0 {
		os.WriteFile("/proc/sys/net/ipv4/ip_forward", forward, 0o644)
	}
	if bridgeBefore != nil {
		exec.Command("ip", "link", "del", "hull0").Run()
	}
	if tableBefore != nil {
		exec.Command("nft", "delete", "table", "ip", "hull").Run()
	}
	if claimsBefore != nil {
		// The machine-wide address claims' directories (empty by now:
		// every test removes its containers).
		if subs, err := os.ReadDir("/run/hull-ipam"); err == nil {
			for _, d := range subs {
				os.Remove(filepath.Join("/run/hull-ipam", d.Name()))
			}
		}
		os.Remove("/run/hull-ipam")
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// hull runs the binary on a store.
func hull(t *testing.T, root string, args ...string) result {
	t.Helper()
	return hullIn(t, root, nil, args...)
}

func hullIn(t *testing.T, root string, env []string, args ...string) result {
	t.Helper()
	return hullStdin(t, root, env, nil, args...)
}

// hullStdin is hullIn with stdin.
func hullStdin(t *testing.T, root string, env []string, stdin io.Reader, args ...string) result {
	t.Helper()
	cmd := exec.Command(hullBin, append([]string{"--root", root}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("hull %v: %v", args, err)
	}
	return r
}

// must runs hull and fails the test unless it exits 0.
func must(t *testing.T, root string, args ...string) string {
	t.Helper()
	r := hull(t, root, args...)
	if r.code != 0 {
		t.Fatalf("hull %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// newRoot is a store directory for one test; root filesystems it may hold
// are unmounted when the test ends.
func newRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "store")
	return root
}

func bootstrapRoot(t *testing.T) string {
	t.Helper()
	root := newRoot(t)
	must(t, root, "image", "bootstrap", "busybox")
	return root
}

// checkStore opens the store in-process and fails on any inconsistency.
func checkStore(t *testing.T, root string) {
	t.Helper()
	s, err := image.Open(root, "")
	if err != nil {
		t.Fatal(err)
	}
	problems, err := s.Check()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// storeState lists a store's images, names and blobs, to compare before and
// after an operation that must not change it.
func storeState(t *testing.T, root string) string {
	t.Helper()
	images := must(t, root, "images", "-a", "--no-trunc", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Digest}}")
	ents, _ := os.ReadDir(filepath.Join(root, "content", "blobs", "sha256"))
	var blobs []string
	for _, e := range ents {
		blobs = append(blobs, e.Name())
	}
	ingest, _ := os.ReadDir(filepath.Join(root, "content", "ingest"))
	layers, _ := os.ReadDir(filepath.Join(root, "storage", "layers"))
	return fmt.Sprintf("%s\nblobs %v\ningest %d\nlayers %d", images, blobs, len(ingest), len(layers))
}

func TestVersionAndInfo(t *testing.T) {
	root := bootstrapRoot(t)
	if out := must(t, root, "--version"); !strings.HasPrefix(out, "hull version ") {
		t.Errorf("--version: %q", out)
	}
	out := must(t, root, "info")
	for _, want := range []string{"Storage Driver: overlay", "Images: 1", "Containers: 0", "Cgroup Version:", "Kernel Version:", "Hull Root Dir: " + root} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
	if out := must(t, root, "info", "--format", "{{.Driver}} {{.Images}}"); out != "overlay 1\n" {
		t.Errorf("info --format: %q", out)
	}
	// HULL_ROOT selects the store too.
	r := hullIn(t, "", nil, "--help")
	if r.code != 0 {
		t.Fatal(r.stderr)
	}
	cmd := exec.Command(hullBin, "images", "-q")
	cmd.Env = append(os.Environ(), "HULL_ROOT="+root)
	if out, err := cmd.Output(); err != nil || len(strings.Fields(string(out))) != 1 {
		t.Errorf("HULL_ROOT: %q %v", out, err)
	}
}

func TestImagesOutput(t *testing.T) {
	root := bootstrapRoot(t)
	must(t, root, "tag", "busybox", "example.com/team/tools:1.0")
	tarball := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := exec.Command("tar", "-cf", tarball, "-C", "/usr/share/doc", "tar").Run(); err != nil {
		t.Fatal(err)
	}
	imported := strings.TrimSpace(must(t, root, "import", "--change", "CMD [\"/bin/true\"]", tarball))
	if !strings.HasPrefix(imported, "sha256:") {
		t.Fatalf("import printed %q", imported)
	}

	out := must(t, root, "images")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("images:\n%s", out)
	}
	if strings.Join(strings.Fields(lines[0]), " ") != "REPOSITORY TAG IMAGE ID CREATED SIZE" {
		t.Errorf("header: %q", lines[0])
	}
	if !strings.Contains(out, "<none>") || !strings.Contains(out, "example.com/team/tools") {
		t.Errorf("images:\n%s", out)
	}
	ids := strings.Fields(must(t, root, "images", "-q"))
	if len(ids) != 2 || len(ids[0]) != 12 {
		t.Errorf("images -q: %v", ids)
	}
	if got := must(t, root, "images", "--filter", "dangling=true", "-q", "--no-trunc"); strings.TrimSpace(got) != imported {
		t.Errorf("dangling: %q, want %s", got, imported)
	}
	got := must(t, root, "images", "--filter", "reference=busy*", "--format", "{{.Repository}}:{{.Tag}}")
	if got != "busybox:latest\n" {
		t.Errorf("reference filter: %q", got)
	}
	if got := must(t, root, "images", "example.com/team/tools", "--format", "{{.Tag}}"); got != "1.0\n" {
		t.Errorf("images REPOSITORY: %q", got)
	}
	got = must(t, root, "images", "--format", "table {{.Repository}}\t{{.Size}}", "--filter", "dangling=false")
	if !strings.HasPrefix(got, "REPOSITORY") || strings.Count(got, "\n") != 3 {
		t.Errorf("table format:\n%s", got)
	}
	var row map[string]any
	js := must(t, root, "images", "--format", "json", "--filter", "reference=busybox")
	if err := json.Unmarshal([]byte(js), &row); err != nil || row["Repository"] != "busybox" {
		t.Errorf("json format: %q %v", js, err)
	}
	if out := must(t, root, "images", "--digests"); !strings.Contains(out, "DIGEST") {
		t.Errorf("--digests:\n%s", out)
	}

	// inspect, history, tag removal.
	var ins []map[string]any
	if err := json.Unmarshal([]byte(must(t, root, "image", "inspect", "busybox")), &ins); err != nil || len(ins) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	cfg := ins[0]["Config"].(map[string]any)
	if ins[0]["Os"] != "linux" || fmt.Sprint(cfg["Cmd"]) != "[sh]" || ins[0]["GraphDriver"].(map[string]any)["Name"] != "overlay" {
		t.Errorf("inspect: %v", ins[0])
	}
	tags := must(t, root, "inspect", "--format", "{{json .RepoTags}}", "busybox")
	if tags != "[\"busybox:latest\",\"example.com/team/tools:1.0\"]\n" {
		t.Errorf("RepoTags: %q", tags)
	}
	hist := must(t, root, "history", "busybox")
	if !strings.HasPrefix(hist, "IMAGE") || !strings.Contains(hist, "hull image bootstrap busybox") {
		t.Errorf("history:\n%s", hist)
	}
	out = must(t, root, "rmi", "example.com/team/tools:1.0")
	if out != "Untagged: example.com/team/tools:1.0\n" {
		t.Errorf("rmi of one of two names: %q", out)
	}
	out = must(t, root, "image", "prune", "-f")
	if !strings.Contains(out, "deleted: "+imported) || !strings.Contains(out, "Total reclaimed space:") {
		t.Errorf("prune:\n%s", out)
	}
	if out := must(t, root, "system", "df"); !strings.Contains(out, "Images          1") {
		t.Errorf("df:\n%s", out)
	}
	checkStore(t, root)
}

func TestBadInputExit125AndStoreUnchanged(t *testing.T) {
	root := bootstrapRoot(t)
	before := storeState(t, root)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.tar")
	os.WriteFile(garbage, bytes.Repeat([]byte("not a tar "), 1000), 0o644)
	saved := filepath.Join(dir, "saved.tar")
	must(t, root, "save", "-o", saved, "busybox")
	raw, _ := os.ReadFile(saved)
	truncated := filepath.Join(dir, "truncated.tar")
	os.WriteFile(truncated, raw[:len(raw)-len(raw)/3], 0o644)

	cases := [][]string{
		{"pull", "Not::A::Ref"},
		{"pull", "--tls-verify=false", "127.0.0.1:1/nothing/here:latest"},
		{"push", "--tls-verify=false", "127.0.0.1:1/nothing:latest"},
		{"load", "-i", filepath.Join(dir, "missing.tar")},
		{"load", "-i", garbage},
		{"load", "-i", truncated},
		{"rmi", "nosuchimage"},
		{"tag", "nosuchimage", "x:1"},
		{"tag", "busybox", "UPPER:case"},
		{"save", "-o", filepath.Join(dir, "x.tar"), "nosuchimage"},
		{"save", "--format", "zip", "-o", filepath.Join(dir, "y.tar"), "busybox"},
		{"images", "--filter", "color=blue"},
		{"image", "bootstrap", "alpine"},
		{"import", filepath.Join(dir, "missing.tar")},
		{"import", "--change", "FROM scratch", garbage},
		{"--log-level", "loud", "images"},
		{"images", "--no-such-flag"},
	}
	for _, args := range cases {
		r := hull(t, root, args...)
		if r.code != exitEngine {
			t.Errorf("hull %s: exit %d, want 125\n%s", strings.Join(args, " "), r.code, r.stderr)
			continue
		}
		msg := strings.TrimSpace(r.stderr)
		if !strings.HasPrefix(msg, "Error: ") || (strings.Count(msg, "\n") > 0 && args[0] != "images") {
			t.Errorf("hull %s: error is not one line: %q", strings.Join(args, " "), r.stderr)
		}
	}
	for _, f := range []string{"x.tar", "y.tar"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("a failed save left %s", f)
		}
	}
	if after := storeState(t, root); after != before {
		t.Errorf("store changed:\n%s\n---\n%s", before, after)
	}
	checkStore(t, root)
}

func TestRegistryPushPullAndSkopeo(t *testing.T) {
	reg := registrytest.Start(t)
	src := bootstrapRoot(t)
	ref := reg.Host + "/hull/busybox:1.0"
	must(t, src, "tag", "busybox", ref)
	out := must(t, src, "push", "--tls-verify=false", ref)
	if !strings.Contains(out, "1.0: digest: sha256:") {
		t.Errorf("push output:\n%s", out)
	}
	pushed := strings.Fields(out[strings.Index(out, "digest: "):])[1]
	srcID := strings.TrimSpace(must(t, src, "inspect", "--format", "{{.Id}}", ref))

	dst := newRoot(t)
	out = must(t, dst, "pull", "--tls-verify=false", ref)
	if !strings.Contains(out, "Status: Downloaded newer image for "+ref) || !strings.HasSuffix(out, ref+"\n") {
		t.Errorf("pull output:\n%s", out)
	}
	if id := strings.TrimSpace(must(t, dst, "inspect", "--format", "{{.Id}}", ref)); id != srcID {
		t.Errorf("pulled ID %s, pushed %s", id, srcID)
	}
	if out := must(t, dst, "pull", "--tls-verify=false", ref); !strings.Contains(out, "Image is up to date") {
		t.Errorf("second pull:\n%s", out)
	}
	digests := must(t, dst, "inspect", "--format", "{{json .RepoDigests}}", ref)
	if !strings.Contains(digests, reg.Host+"/hull/busybox@"+pushed) {
		t.Errorf("RepoDigests %s lack %s", digests, pushed)
	}
	// By digest too.
	byDigest := reg.Host + "/hull/busybox@" + pushed
	if out := must(t, newRoot(t), "pull", "--tls-verify=false", byDigest); !strings.Contains(out, pushed) {
		t.Errorf("pull by digest:\n%s", out)
	}

	// skopeo reads what hull pushed.
	sk, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "docker://"+ref).Output()
	if err != nil {
		t.Fatalf("skopeo inspect: %v", err)
	}
	var info struct {
		Digest string
		Layers []string
	}
	if err := json.Unmarshal(sk, &info); err != nil || info.Digest != pushed || len(info.Layers) != 1 {
		t.Errorf("skopeo inspect: %s (%v)", sk, err)
	}

	// skopeo accepts what hull saved; hull loads what skopeo wrote.
	dir := t.TempDir()
	saved := filepath.Join(dir, "saved.tar")
	must(t, src, "save", "-o", saved, "busybox")
	if out, err := exec.Command("skopeo", "copy", "docker-archive:"+saved, "oci:"+filepath.Join(dir, "layout")+":bb").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy docker-archive: %v\n%s", err, out)
	}
	ociArchive := filepath.Join(dir, "skopeo-oci.tar")
	if out, err := exec.Command("skopeo", "copy", "docker-archive:"+saved, "oci-archive:"+ociArchive+":example.com/from/skopeo:2").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy to oci-archive: %v\n%s", err, out)
	}
	fresh := newRoot(t)
	out = must(t, fresh, "load", "-i", ociArchive)
	if !strings.Contains(out, "Loaded image: example.com/from/skopeo:2") {
		t.Errorf("load of skopeo's OCI archive:\n%s", out)
	}
	out = must(t, fresh, "load", "-i", filepath.Join(dir, "layout"))
	if !strings.Contains(out, "Loaded image") {
		t.Errorf("load of an OCI layout directory:\n%s", out)
	}
	// hull's OCI archive keeps the image ID and is read by skopeo too.
	ociSaved := filepath.Join(dir, "hull-oci.tar")
	must(t, src, "save", "--format", "oci-archive", "-o", ociSaved, "busybox")
	if out, err := exec.Command("skopeo", "inspect", "oci-archive:"+ociSaved).CombinedOutput(); err != nil {
		t.Errorf("skopeo inspect of hull's OCI archive: %v\n%s", err, out)
	}
	other := newRoot(t)
	must(t, other, "load", "-i", ociSaved)
	if id := strings.TrimSpace(must(t, other, "inspect", "--format", "{{.Id}}", "busybox")); id != srcID {
		t.Errorf("OCI archive round trip: ID %s, want %s", id, srcID)
	}
	for _, r := range []string{src, dst, fresh, other} {
		checkStore(t, r)
	}
}

func TestLoginLogoutKeepsDockerConfig(t *testing.T) {
	reg := registrytest.StartWithAuth(t, "alice", "secret")
	root := bootstrapRoot(t)
	ref := reg.Host + "/private/busybox:1"
	must(t, root, "tag", "busybox", ref)
	authfile := filepath.Join(t.TempDir(), "config.json")
	// Other settings in the file survive.
	os.WriteFile(authfile, []byte(`{"detachKeys":"ctrl-x"}`), 0o600)

	// Without credentials the registry refuses, and nothing is stored.
	if r := hull(t, root, "push", "--authfile", authfile, ref); r.code != exitEngine || !strings.Contains(strings.ToLower(r.stderr), "unauthorized") {
		t.Errorf("push without login: exit %d %s", r.code, r.stderr)
	}
	if r := hull(t, root, "login", "--authfile", authfile, "-u", "alice", "-p", "wrong", reg.Host); r.code != exitEngine || !strings.Contains(r.stderr, "incorrect username or password") {
		t.Errorf("login with a wrong password: exit %d %s", r.code, r.stderr)
	}
	if raw, _ := os.ReadFile(authfile); strings.Contains(string(raw), "auths") && strings.Contains(string(raw), reg.Host) {
		t.Errorf("a failed login stored credentials: %s", raw)
	}

	cmd := exec.Command(hullBin, "--root", root, "login", "--authfile", authfile, "-u", "alice", "--password-stdin", reg.Host)
	cmd.Stdin = strings.NewReader("secret\n")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Login Succeeded") {
		t.Fatalf("login: %v %s", err, out)
	}
	var cfg struct {
		Auths      map[string]struct{ Auth string } `json:"auths"`
		DetachKeys string                           `json:"detachKeys"`
	}
	raw, _ := os.ReadFile(authfile)
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	// base64("alice:secret"), as docker login writes it.
	if cfg.Auths[reg.Host].Auth != "YWxpY2U6c2VjcmV0" || cfg.DetachKeys != "ctrl-x" {
		t.Errorf("config.json after login: %s", raw)
	}
	// The credentials serve push and pull.
	must(t, root, "push", "-q", "--authfile", authfile, ref)
	other := newRoot(t)
	must(t, other, "pull", "-q", "--authfile", authfile, ref)
	// DOCKER_CONFIG is where Docker looks by default; hull too.
	r := hullIn(t, newRoot(t), []string{"DOCKER_CONFIG=" + filepath.Dir(authfile)}, "pull", "-q", ref)
	if r.code != 0 {
		t.Errorf("pull with DOCKER_CONFIG: %d %s", r.code, r.stderr)
	}

	if out := must(t, root, "logout", "--authfile", authfile, reg.Host); !strings.Contains(out, "Removing login credentials") {
		t.Errorf("logout: %q", out)
	}
	raw, _ = os.ReadFile(authfile)
	if strings.Contains(string(raw), "YWxpY2U6c2VjcmV0") || !strings.Contains(string(raw), "ctrl-x") {
		t.Errorf("config.json after logout: %s", raw)
	}
	if r := hull(t, newRoot(t), "pull", "--authfile", authfile, ref); r.code != exitEngine {
		t.Errorf("pull after logout: exit %d", r.code)
	}
	if out := must(t, root, "logout", "--authfile", authfile, reg.Host); !strings.Contains(out, "Not logged in") {
		t.Errorf("second logout: %q", out)
	}
	if r := hull(t, root, "login", "--authfile", authfile, "-u", "bob", "-p", "x", "127.0.0.1:1"); r.code != exitEngine {
		t.Errorf("login to a registry that is down: exit %d", r.code)
	}
}

func TestProgressBarsOnTerminalPlainInPipe(t *testing.T) {
	root := bootstrapRoot(t)
	saved := filepath.Join(t.TempDir(), "bb.tar")
	must(t, root, "save", "-o", saved, "busybox")
	piped := must(t, newRoot(t), "load", "-i", saved)
	if strings.Contains(piped, "\x1b[") {
		t.Errorf("escape sequences in a pipe: %q", piped)
	}
	if !strings.Contains(piped, "Loading layer complete") || !strings.Contains(piped, "Loaded image: busybox:latest") {
		t.Errorf("piped load:\n%s", piped)
	}
	// script(1) gives the command a terminal.
	line := fmt.Sprintf("%s --root %s load -i %s", hullBin, newRoot(t), saved)
	out, err := exec.Command("script", "-qec", line, "/dev/null").Output()
	if err != nil {
		t.Fatalf("script: %v", err)
	}
	if !strings.Contains(string(out), "\x1b[") || !strings.Contains(string(out), "Loaded image: busybox:latest") {
		t.Errorf("no bars on a terminal: %q", out)
	}
	if q := must(t, newRoot(t), "load", "-q", "-i", saved); q != "Loaded image: busybox:latest\n" {
		t.Errorf("load -q: %q", q)
	}
}

// TestConcurrentProcesses runs pulls, loads, tags and removals from many
// processes on one store at once, then checks every blob and record.
func TestConcurrentProcesses(t *testing.T) {
	reg := registrytest.Start(t)
	seed := bootstrapRoot(t)
	ref := reg.Host + "/conc/busybox:1"
	must(t, seed, "tag", "busybox", ref)
	must(t, seed, "push", "--tls-verify=false", "-q", ref)
	tarball := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := exec.Command("tar", "-cf", tarball, "-C", "/usr/share/doc", "tar", "gzip").Run(); err != nil {
		t.Fatal(err)
	}
	must(t, seed, "import", tarball, "other:1")
	saved := filepath.Join(t.TempDir(), "both.tar")
	must(t, seed, "save", "-o", saved, "busybox", "other:1")

	root := newRoot(t)
	must(t, root, "image", "bootstrap", "busybox")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	run := func(args ...string) {
		defer wg.Done()
		r := hull(t, root, args...)
		if r.code != 0 {
			mu.Lock()
			failures = append(failures, fmt.Sprintf("%v: %d %s", args, r.code, strings.TrimSpace(r.stderr)))
			mu.Unlock()
		}
	}
	for round := 0; round < 3; round++ {
		for i := 0; i < 3; i++ {
			wg.Add(5)
			go run("pull", "-q", "--tls-verify=false", ref)
			go run("load", "-q", "-i", saved)
			go run("tag", "busybox", fmt.Sprintf("tagged:%d-%d", round, i))
			go run("rmi", fmt.Sprintf("tagged:%d-%d", round, i-1))
			go run("image", "prune", "-f")
		}
		wg.Wait()
	}
	// Removals of tags not made yet fail, as they should; nothing else may.
	for _, f := range failures {
		if !strings.Contains(f, "rmi") || !strings.Contains(f, "No such image") && !strings.Contains(f, "no such image") {
			t.Errorf("%s", f)
		}
	}
	checkStore(t, root)
	names := strings.Fields(must(t, root, "images", "--format", "{{.Repository}}:{{.Tag}}"))
	sort.Strings(names)
	for _, want := range []string{"busybox:latest", "other:1", ref} {
		if i := sort.SearchStrings(names, want); i == len(names) || names[i] != want {
			t.Errorf("image %s missing after the run: %v", want, names)
		}
	}
}

// podman runs Podman on a private store, with the rlimits these machines
// allow (see the peers' notes), and removes that store when the test ends.
func podman(t *testing.T) func(args ...string) ([]byte, error) {
	t.Helper()
	// Podman refuses a runroot longer than 50 characters.
	dir, err := os.MkdirTemp("", "pm-")
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "containers.conf")
	os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=4096:4096\"]\n[engine]\nruntime = \"runc\"\n"), 0o644)
	root, run := filepath.Join(dir, "root"), filepath.Join(dir, "run")
	// --tmpdir too: podman's default, /run/libpod, belongs to the host's
	// podman. Cleanup unmounts and deletes the directory rather than run
	// `podman system reset`, which also deletes the host's network configs.
	base := []string{"--root", root, "--runroot", run, "--tmpdir", filepath.Join(dir, "tmp"), "--storage-driver", "vfs"}
	t.Cleanup(func() {
		raw, _ := os.ReadFile("/proc/self/mountinfo")
		var points []string
		for _, line := range strings.Split(string(raw), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
				points = append(points, f[4])
			}
		}
		sort.Sort(sort.Reverse(sort.StringSlice(points)))
		for _, p := range points {
			exec.Command("umount", "-l", p).Run()
		}
		os.RemoveAll(dir)
	})
	return func(args ...string) ([]byte, error) {
		c := exec.Command("podman", append(base, args...)...)
		c.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
		return c.CombinedOutput()
	}
}

func TestPodmanLoadsHullSaveAndHullLoadsPodmanSave(t *testing.T) {
	root := bootstrapRoot(t)
	id := strings.TrimSpace(must(t, root, "inspect", "--format", "{{.Id}}", "busybox"))
	dir := t.TempDir()
	saved := filepath.Join(dir, "hull.tar")
	must(t, root, "save", "-o", saved, "busybox")
	pm := podman(t)
	if out, err := pm("load", "-i", saved); err != nil || !strings.Contains(string(out), "busybox:latest") {
		t.Fatalf("podman load of hull's docker-archive: %v\n%s", err, out)
	}
	out, err := pm("image", "inspect", "--format", "{{.Id}}", "busybox:latest")
	if err != nil || "sha256:"+strings.TrimSpace(string(out)) != id {
		t.Errorf("podman sees image %s (%v), hull saved %s", out, err, id)
	}
	// And back: podman's docker-archive (the classic layout docker save
	// writes: <id>/layer.tar, <config>.json) and its OCI archive.
	for _, format := range []string{"docker-archive", "oci-archive"} {
		file := filepath.Join(dir, "podman-"+format+".tar")
		if out, err := pm("save", "--format", format, "-o", file, "busybox:latest"); err != nil {
			t.Fatalf("podman save %s: %v\n%s", format, err, out)
		}
		fresh := newRoot(t)
		out := must(t, fresh, "load", "-i", file)
		if !strings.Contains(out, "Loaded image: busybox:latest") {
			t.Errorf("load of podman's %s:\n%s", format, out)
		}
		if got := strings.TrimSpace(must(t, fresh, "inspect", "--format", "{{.Id}}", "busybox")); got != id {
			t.Errorf("%s from podman: ID %s, want %s", format, got, id)
		}
		checkStore(t, fresh)
	}
}

func TestCompressedLayersAndArchives(t *testing.T) {
	reg := registrytest.Start(t)
	root := bootstrapRoot(t)
	id := strings.TrimSpace(must(t, root, "inspect", "--format", "{{.Id}}", "busybox"))
	dir := t.TempDir()
	saved := filepath.Join(dir, "bb.tar")
	must(t, root, "save", "-o", saved, "busybox")
	// skopeo pushes with gzip and zstd layers; hull pulls both.
	for _, comp := range []string{"gzip", "zstd"} {
		ref := reg.Host + "/comp/" + comp + ":1"
		out, err := exec.Command("skopeo", "copy", "--dest-tls-verify=false", "--dest-compress", "--dest-compress-format", comp,
			"docker-archive:"+saved, "docker://"+ref).CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo copy %s: %v\n%s", comp, err, out)
		}
		fresh := newRoot(t)
		must(t, fresh, "pull", "--tls-verify=false", ref)
		if got := strings.TrimSpace(must(t, fresh, "inspect", "--format", "{{.Id}}", ref)); got == "" {
			t.Errorf("%s: no image", comp)
		}
		var diff []string
		json.Unmarshal([]byte(must(t, fresh, "inspect", "--format", "{{json .RootFS.Layers}}", ref)), &diff)
		var want []string
		json.Unmarshal([]byte(must(t, root, "inspect", "--format", "{{json .RootFS.Layers}}", "busybox")), &want)
		if strings.Join(diff, ",") != strings.Join(want, ",") {
			t.Errorf("%s layer diff IDs %v, want %v", comp, diff, want)
		}
		checkStore(t, fresh)
		// Saving a compressed image writes plain layers that load back.
		again := filepath.Join(dir, comp+".tar")
		must(t, fresh, "save", "-o", again, ref)
		must(t, newRoot(t), "load", "-i", again)
	}
	// A gzip-compressed archive on standard input, as `docker save | gzip`.
	gz := filepath.Join(dir, "bb.tar.gz")
	if err := exec.Command("sh", "-c", "gzip -c "+saved+" > "+gz).Run(); err != nil {
		t.Fatal(err)
	}
	fresh := newRoot(t)
	cmd := exec.Command(hullBin, "--root", fresh, "load")
	f, _ := os.Open(gz)
	defer f.Close()
	cmd.Stdin = f
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Loaded image: busybox:latest") {
		t.Fatalf("load from stdin: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(must(t, fresh, "inspect", "--format", "{{.Id}}", "busybox")); got != id {
		t.Errorf("gzip archive: ID %s, want %s", got, id)
	}
	// Save to stdout.
	out, err := exec.Command(hullBin, "--root", root, "save", "busybox").Output()
	if err != nil || len(out) < 1<<20 {
		t.Errorf("save to stdout: %d bytes, %v", len(out), err)
	}
}

func TestFullDiskLeavesStoreAsItWas(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "store")
	os.Mkdir(root, 0o755)
	// A small filesystem that holds busybox but not a second, bigger image.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", root).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", root).Run() })
	must(t, root, "image", "bootstrap", "busybox")
	before := storeState(t, root)
	big := filepath.Join(dir, "big.tar")
	// 8 MB of incompressible data: blob and layer need 16 MB.
	if err := exec.Command("sh", "-c", "mkdir -p "+dir+"/big && head -c 8000000 /dev/urandom > "+dir+"/big/data && tar -cf "+big+" -C "+dir+"/big data").Run(); err != nil {
		t.Fatal(err)
	}
	r := hull(t, root, "import", big, "big:1")
	if r.code != exitEngine || !strings.Contains(r.stderr, "no space left on device") {
		t.Fatalf("import on a full disk: exit %d, %s", r.code, r.stderr)
	}
	if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("error is not one line: %q", r.stderr)
	}
	if after := storeState(t, root); after != before {
		t.Errorf("store changed:\n%s\n---\n%s", before, after)
	}
	checkStore(t, root)
	// The space is back: what fits still works.
	must(t, root, "tag", "busybox", "still:works")
}

func TestImageMount(t *testing.T) {
	for _, driver := range []string{"overlay", "vfs"} {
		t.Run(driver, func(t *testing.T) {
			root := newRoot(t)
			must(t, root, "--storage-driver", driver, "image", "bootstrap", "busybox")
			if out := must(t, root, "info", "--format", "{{.Driver}}"); out != driver+"\n" {
				t.Fatalf("driver %q", out)
			}
			mnt := strings.TrimSpace(must(t, root, "image", "mount", "busybox"))
			t.Cleanup(func() { hull(t, root, "image", "unmount", "busybox") })
			if again := strings.TrimSpace(must(t, root, "image", "mount", "busybox")); again != mnt {
				t.Errorf("second mount at %s, first at %s", again, mnt)
			}
			passwd, err := os.ReadFile(filepath.Join(mnt, "etc/passwd"))
			if err != nil || !strings.HasPrefix(string(passwd), "root:") {
				t.Errorf("etc/passwd in the mounted image: %q %v", passwd, err)
			}
			if err := os.WriteFile(filepath.Join(mnt, "x"), nil, 0o644); err == nil {
				t.Error("the mounted image is writable")
			}
			if out := must(t, root, "image", "mount"); !strings.Contains(out, "busybox:latest "+mnt) {
				t.Errorf("mount list: %q", out)
			}
			if r := hull(t, root, "rmi", "busybox"); r.code != exitEngine || !strings.Contains(r.stderr, "mounted") {
				t.Errorf("rmi of a mounted image: %d %s", r.code, r.stderr)
			}
			must(t, root, "image", "unmount", "busybox")
			if raw, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(raw), mnt) {
				t.Errorf("%s still mounted", mnt)
			}
			// The vfs store saves and loads like the overlay one.
			saved := filepath.Join(t.TempDir(), "bb.tar")
			must(t, root, "save", "-o", saved, "busybox")
			other := newRoot(t)
			must(t, other, "--storage-driver", driver, "load", "-i", saved)
			checkStore(t, other)
			must(t, root, "rmi", "busybox")
			checkStore(t, root)
			if r := hull(t, root, "--storage-driver", map[string]string{"overlay": "vfs", "vfs": "overlay"}[driver], "images"); r.code != exitEngine {
				t.Errorf("opening a %s store with the other driver: exit %d", driver, r.code)
			}
		})
	}
}

// TestImportURL: import reads the tarball from an http(s) URL, as docker
// import does; a URL that does not answer 200 is a one-line error that
// adds nothing. The server is on loopback.
func TestImportURL(t *testing.T) {
	root := bootstrapRoot(t)
	dir := t.TempDir()
	tarball := filepath.Join(dir, "rootfs.tar.gz")
	if err := exec.Command("tar", "-czf", tarball, "-C", "/usr/share/doc", "tar").Run(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	id := strings.TrimSpace(must(t, root, "import", "--change", "CMD [\"/bin/true\"]", srv.URL+"/rootfs.tar.gz", "fromurl:1"))
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("import printed %q", id)
	}
	if out := must(t, root, "history", "--no-trunc", "--format", "{{.CreatedBy}}", "fromurl:1"); !strings.Contains(out, srv.URL+"/rootfs.tar.gz") {
		t.Errorf("history: %q", out)
	}
	if out := must(t, root, "image", "inspect", "-f", "{{.Config.Cmd}}", "fromurl:1"); strings.TrimSpace(out) != "[/bin/true]" {
		t.Errorf("--change with a URL: %q", out)
	}
	before := must(t, root, "images", "-a", "-q", "--no-trunc")
	r := hull(t, root, "import", srv.URL+"/missing.tar", "nothing:1")
	if r.code != exitEngine || !strings.Contains(r.stderr, "404") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("import of a missing URL: exit %d, %q", r.code, r.stderr)
	}
	if after := must(t, root, "images", "-a", "-q", "--no-trunc"); after != before {
		t.Errorf("a failed import changed the images:\n%s\n%s", before, after)
	}
}

// TestPullPlatform: pull --platform picks a platform's manifest from a
// multi-platform index, refuses a single-platform image of another
// platform, and gives bad platforms a one-line error that changes nothing.
func TestPullPlatform(t *testing.T) {
	reg := registrytest.Start(t)
	src := bootstrapRoot(t)
	single := reg.Host + "/hull/busybox:single"
	must(t, src, "tag", "busybox", single)
	must(t, src, "push", "--tls-verify=false", single)

	// An index of the image and an "arm64" copy of it (same layers, its
	// config says arm64/v8), made with go-containerregistry.
	sref, err := name.ParseReference(single, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	amd, err := remote.Image(sref)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := amd.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	armCf := cf.DeepCopy()
	armCf.Architecture, armCf.Variant = "arm64", "v8"
	arm, err := mutate.ConfigFile(amd, armCf)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	multi := reg.Host + "/hull/multi:1"
	mref, err := name.ParseReference(multi, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(mref, idx); err != nil {
		t.Fatal(err)
	}

	arch := func(root, ref string) string {
		return strings.TrimSpace(must(t, root, "image", "inspect", "-f", "{{.Architecture}}", ref))
	}
	dst := newRoot(t)
	must(t, dst, "pull", "--tls-verify=false", "--platform", "linux/arm64", multi)
	if a := arch(dst, multi); a != "arm64" {
		t.Errorf("--platform linux/arm64: architecture %q", a)
	}
	must(t, dst, "pull", "--tls-verify=false", multi)
	if a := arch(dst, multi); a != "amd64" {
		t.Errorf("default platform: architecture %q", a)
	}
	before := storeState(t, dst)
	for _, args := range [][]string{
		{"pull", "--tls-verify=false", "--platform", "linux/s390x", multi},
		{"pull", "--tls-verify=false", "--platform", "nonsense", multi},
		{"pull", "--tls-verify=false", "--platform", "linux/arm64", single},
	} {
		r := hull(t, dst, args...)
		if r.code != exitEngine || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("hull %s: exit %d, %q", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	if after := storeState(t, dst); after != before {
		t.Errorf("a refused pull changed the store:\n%s\n---\n%s", before, after)
	}
}
