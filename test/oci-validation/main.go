// Command oci-validation runs the runtime-tools v0.9.0 validation programs
// against an OCI runtime with runc's command line and reports one line per
// program, then a closing "N passed, M failed" line.
//
// Run it from this directory (run.sh does that):
//
//	go run . [-timeout 60s] [-run REGEXP] [RUNTIME]
//
// The runtime is taken from the argument, else from $RUNTIME, else
// ../../bin/hull-runc. See README.md.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	thisModule   = "github.com/hullproject/hull/test/oci-validation"
	toolsModule  = "github.com/opencontainers/runtime-tools"
	validationNS = toolsModule + "/validation/"
	runtimetest  = toolsModule + "/cmd/runtimetest"
	// wantPrograms is the number of validation programs in runtime-tools v0.9.0.
	wantPrograms = 58
	tarballName  = "rootfs-amd64.tar.gz"
)

type result struct {
	name   string
	pass   bool
	reason string
}

func main() {
	os.Exit(run())
}

func run() int {
	timeout := flag.Duration("timeout", 60*time.Second, "time limit for each validation program")
	only := flag.String("run", "", "run only the programs whose name matches this regular expression")
	noBuild := flag.Bool("nobuild", false, "reuse the programs already in work/bin")
	genRootfs := flag.Bool("generate-rootfs", false, "build "+tarballName+" from the host's /bin/busybox instead of using runtime-tools' copy")
	expectedFile := flag.String("expected", "expected-passes", "file holding the minimum number of programs that must pass")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run . [flags] [RUNTIME]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 1 {
		flag.Usage()
		return 2
	}

	modDir, err := os.Getwd()
	if err == nil {
		err = checkModuleDir(modDir)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "oci-validation: %v\n", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "oci-validation: must run as root (the validation programs create containers)")
		return 2
	}

	rtArg := flag.Arg(0)
	if rtArg == "" {
		rtArg = os.Getenv("RUNTIME")
	}
	if rtArg == "" {
		rtArg = filepath.Join(modDir, "..", "..", "bin", "hull-runc")
	}
	rt, err := resolveRuntime(rtArg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "oci-validation: runtime %q: %v\n", rtArg, err)
		return 2
	}

	var filter *regexp.Regexp
	if *only != "" {
		if filter, err = regexp.Compile(*only); err != nil {
			fmt.Fprintf(os.Stderr, "oci-validation: -run: %v\n", err)
			return 2
		}
	}

	expPath := *expectedFile
	if !filepath.IsAbs(expPath) {
		expPath = filepath.Join(modDir, expPath)
	}
	expected, err := readExpected(expPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "oci-validation: %v\n", err)
		return 2
	}

	work := filepath.Join(modDir, "work")
	dirs := workDirs{
		root: work,
		bin:  filepath.Join(work, "bin"),
		run:  filepath.Join(work, "run"),
		tmp:  filepath.Join(work, "tmp"),
		logs: filepath.Join(work, "logs"),
	}
	for _, d := range []string{dirs.bin, dirs.run, dirs.logs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "oci-validation: %v\n", err)
			return 2
		}
	}
	unlock, err := lockWorkDir(work)
	if err != nil {
		fmt.Fprintf(os.Stderr, "oci-validation: %v\n", err)
		return 2
	}
	defer unlock()

	programs, err := listPrograms()
	if err != nil {
		fmt.Fprintf(os.Stderr, "oci-validation: listing validation programs: %v\n", err)
		return 2
	}
	if len(programs) != wantPrograms {
		fmt.Fprintf(os.Stderr, "oci-validation: warning: found %d validation programs, expected %d\n", len(programs), wantPrograms)
	}
	if !*noBuild {
		if err := buildPrograms(work, dirs.bin, programs); err != nil {
			fmt.Fprintf(os.Stderr, "oci-validation: building validation programs: %v\n", err)
			return 2
		}
	}
	if err := prepareRunDir(dirs, *genRootfs); err != nil {
		fmt.Fprintf(os.Stderr, "oci-validation: preparing %s: %v\n", dirs.run, err)
		return 2
	}

	names := make([]string, 0, len(programs))
	for _, p := range programs {
		n := p[len(validationNS):]
		if filter == nil || filter.MatchString(n) {
			names = append(names, n)
		}
	}

	startReaper()
	env := newCleaner(rt, dirs)
	// Remove whatever an interrupted earlier run left under work/tmp.
	env.cleanTmp(io.Discard, "")

	// An interrupt kills the running program; cleanup then runs as usual
	// and the loop stops.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sigs
		cancel()
	}()

	fmt.Printf("# runtime: %s\n", rt)
	var results []result
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		r := runOne(ctx, name, rt, dirs, *timeout, env)
		results = append(results, r)
		if r.pass {
			fmt.Printf("PASS %s\n", name)
		} else {
			fmt.Printf("FAIL %s (%s)\n", name, r.reason)
		}
	}
	interrupted := ctx.Err() != nil
	env.finalReport(os.Stderr)

	passed, failed := 0, 0
	for _, r := range results {
		if r.pass {
			passed++
		} else {
			failed++
		}
	}
	writeResults(filepath.Join(work, "results.txt"), rt, results)

	status := 0
	if interrupted {
		fmt.Fprintln(os.Stderr, "oci-validation: interrupted")
		status = 130
	} else if filter != nil {
		// A subset is not measured against the full-run number.
	} else if passed < expected {
		fmt.Fprintf(os.Stderr, "oci-validation: %d programs passed, fewer than the %d recorded in %s\n", passed, expected, *expectedFile)
		status = 1
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	return status
}

type workDirs struct {
	root, bin, run, tmp, logs string
}

func checkModuleDir(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err == nil && bytes.Contains(data, []byte("module "+thisModule+"\n")) {
		return nil
	}
	return fmt.Errorf("run this from test/oci-validation (or use test/oci-validation/run.sh); %s is not that module", dir)
}

// resolveRuntime makes the runtime an absolute path: the validation
// programs run from work/run and look the command up themselves.
func resolveRuntime(p string) (string, error) {
	found, err := exec.LookPath(p)
	if err != nil {
		return "", err
	}
	return filepath.Abs(found)
}

func readExpected(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s must hold one non-negative integer", path)
	}
	return n, nil
}

// lockWorkDir keeps two harness runs from sharing work/.
func lockWorkDir(work string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(work, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another harness run holds %s", f.Name())
	}
	return func() { f.Close() }, nil
}

func goCmd(args ...string) *exec.Cmd {
	cmd := exec.Command("go", args...)
	cmd.Stderr = os.Stderr
	return cmd
}

// listPrograms returns the import paths of the validation programs: the main
// packages under runtime-tools' validation/.
func listPrograms() ([]string, error) {
	cmd := goCmd("list", "-f", "{{if eq .Name \"main\"}}{{.ImportPath}}{{end}}", validationNS+"...")
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	var progs []string
	for _, l := range strings.Fields(string(out)) {
		if strings.HasPrefix(l, validationNS) && !strings.Contains(l[len(validationNS):], "/") {
			progs = append(progs, l)
		}
	}
	sort.Strings(progs)
	if len(progs) == 0 {
		return nil, errors.New("no programs found")
	}
	return progs, nil
}

// buildPrograms builds the validation programs and runtimetest (which runs
// inside the busybox rootfs, hence static) into bin.
func buildPrograms(work, bin string, programs []string) error {
	args := append([]string{"build", "-o", bin + string(filepath.Separator)}, programs...)
	cmd := goCmd(args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := cmd.Run(); err != nil {
		return err
	}
	args = []string{"build", "-o", filepath.Join(bin, "runtimetest")}
	if overlay, err := nofileOverlay(work); err != nil {
		fmt.Fprintf(os.Stderr, "oci-validation: warning: runtimetest keeps Go's RLIMIT_NOFILE raise, so process_rlimits cannot pass: %v\n", err)
	} else {
		args = append(args, "-overlay", overlay)
	}
	cmd = goCmd(append(args, runtimetest)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd.Run()
}

// nofileOverlay writes a go build overlay that turns off the Go runtime's
// raise of its own soft RLIMIT_NOFILE (Go 1.19+, syscall/rlimit.go: an init
// that sets the soft limit to hard-1). runtimetest checks the soft
// RLIMIT_NOFILE it was started with; built by a current Go it would see its
// own raise (process_rlimits: expected 3000, actual 3999) whatever the
// runtime did. The overlay is made from the local GOROOT at build time and
// lives in work/, like everything built.
func nofileOverlay(work string) (string, error) {
	out, err := goCmd("env", "GOROOT").Output()
	if err != nil {
		return "", err
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "src", "syscall", "rlimit.go")
	data, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	const initLine = "\nfunc init() {\n"
	if bytes.Count(data, []byte(initLine)) != 1 {
		return "", fmt.Errorf("%s: no single init function to disable", src)
	}
	data = bytes.Replace(data, []byte(initLine), []byte("\nfunc initRaiseNofileDisabledByOCIValidation() {\n"), 1)
	dir := filepath.Join(work, "overlay")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	patched := filepath.Join(dir, "rlimit.go")
	if err := os.WriteFile(patched, data, 0o644); err != nil {
		return "", err
	}
	spec, err := json.Marshal(map[string]map[string]string{"Replace": {src: patched}})
	if err != nil {
		return "", err
	}
	overlay := filepath.Join(dir, "overlay.json")
	return overlay, os.WriteFile(overlay, spec, 0o644)
}

func moduleDir(path string) (string, error) {
	out, err := goCmd("list", "-m", "-f", "{{.Dir}}", path).Output()
	if err != nil {
		return "", err
	}
	d := strings.TrimSpace(string(out))
	if d == "" {
		return "", fmt.Errorf("module %s is not in the module cache", path)
	}
	return d, nil
}

// prepareRunDir fills work/run, the programs' working directory, with the
// rootfs tarball and the runtimetest binary they copy into every bundle.
func prepareRunDir(d workDirs, generate bool) error {
	dst := filepath.Join(d.run, tarballName)
	os.Remove(dst)
	if !generate {
		src := ""
		if md, err := moduleDir(toolsModule); err == nil {
			src = filepath.Join(md, tarballName)
		}
		if err := copyFile(src, dst, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "oci-validation: no %s in the runtime-tools module (%v); generating one from /bin/busybox\n", tarballName, err)
			generate = true
		}
	}
	if generate {
		if err := writeBusyboxRootfs(dst, "/bin/busybox"); err != nil {
			return err
		}
	}
	return copyFile(filepath.Join(d.bin, "runtimetest"), filepath.Join(d.run, "runtimetest"), 0o755)
}

func copyFile(src, dst string, mode os.FileMode) error {
	if src == "" {
		return errors.New("no source")
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".part"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// runOne runs one validation program from work/run with its own TMPDIR,
// judges its TAP output, writes work/logs/<name>.log and cleans up after it.
func runOne(ctx context.Context, name, rt string, d workDirs, timeout time.Duration, c *cleaner) result {
	tmp := filepath.Join(d.tmp, name)
	os.MkdirAll(tmp, 0o755)
	logPath := filepath.Join(d.logs, name+".log")
	outPath := logPath + ".stdout"
	errPath := logPath + ".stderr"
	defer os.Remove(outPath)
	defer os.Remove(errPath)

	res := result{name: name}
	stdout, err1 := os.Create(outPath)
	stderr, err2 := os.Create(errPath)
	if err := errors.Join(err1, err2); err != nil {
		res.reason = "harness: " + err.Error()
		return res
	}

	cmd := exec.Command(filepath.Join(d.bin, name))
	cmd.Dir = d.run
	cmd.Env = append(filteredEnv(), "RUNTIME="+rt, "TMPDIR="+tmp)
	// Files, not pipes: processes that outlive the program (containers,
	// unshare helpers) must not keep Wait from returning.
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	start := time.Now()
	timedOut, interrupted := false, false
	err := startRegistered(cmd)
	if err == nil {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		timer := time.NewTimer(timeout)
		select {
		case err = <-done:
		case <-timer.C:
			timedOut = true
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = <-done
		case <-ctx.Done():
			interrupted = true
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = <-done
		}
		timer.Stop()
		unregister(cmd.Process.Pid)
		// The program's own helpers share its process group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	elapsed := time.Since(start)
	stdout.Close()
	stderr.Close()

	outData, _ := os.ReadFile(outPath)
	errData, _ := os.ReadFile(errPath)

	oks, notOK := scanTAP(outData)
	switch {
	case err != nil && cmd.Process == nil:
		res.reason = "cannot start: " + err.Error()
	case notOK != "":
		res.reason = notOK
	case timedOut:
		res.reason = fmt.Sprintf("timed out after %s", timeout)
	case interrupted:
		res.reason = "interrupted"
	case err != nil:
		res.reason = exitReason(err, errData)
	case oks == 0:
		res.reason = "no ok line in the TAP output"
		if e := firstDiagnosticError(outData); e != "" {
			res.reason += "; error: " + e
		} else {
			// hooks, pre/poststart/stop(_fail), process_*_fail: they
			// print only failures, so success has no test line.
			res.reason += "; exit 0 and no error diagnostic: the program's own checks passed, but it prints no test line"
		}
	default:
		res.pass = true
	}

	var cleanupLog bytes.Buffer
	c.afterProgram(&cleanupLog, name, tmp)

	var log bytes.Buffer
	fmt.Fprintf(&log, "program: %s\nruntime: %s\nworkdir: %s\nTMPDIR: %s\n", name, rt, d.run, tmp)
	fmt.Fprintf(&log, "duration: %s\n", elapsed.Round(time.Millisecond))
	switch {
	case err != nil && cmd.Process == nil:
		fmt.Fprintf(&log, "exit: not started: %v\n", err)
	case timedOut:
		fmt.Fprintf(&log, "exit: killed after the %s time limit\n", timeout)
	case err != nil:
		fmt.Fprintf(&log, "exit: %v\n", err)
	default:
		fmt.Fprintf(&log, "exit: 0\n")
	}
	if res.pass {
		fmt.Fprintf(&log, "result: PASS (%d ok lines)\n", oks)
	} else {
		fmt.Fprintf(&log, "result: FAIL (%s)\n", res.reason)
	}
	fmt.Fprintf(&log, "\n===== stdout =====\n%s", outData)
	fmt.Fprintf(&log, "\n===== stderr =====\n%s", errData)
	fmt.Fprintf(&log, "\n===== cleanup =====\n%s", cleanupLog.Bytes())
	os.WriteFile(logPath, log.Bytes(), 0o644)
	return res
}

// filteredEnv is the harness's environment without variables that would
// change what the programs or the runtime do behind the harness's back.
func filteredEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "RUNTIME", "TMPDIR", "XDG_RUNTIME_DIR", "NOTIFY_SOCKET":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// scanTAP counts the top-level "ok" lines and returns the first "not ok"
// line. Diagnostics (YAML blocks) are indented and so never match.
func scanTAP(out []byte) (oks int, firstNotOK string) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case l == "ok" || strings.HasPrefix(l, "ok "):
			oks++
		case l == "not ok" || strings.HasPrefix(l, "not ok "):
			if firstNotOK == "" {
				firstNotOK = l
			}
		}
	}
	return oks, firstNotOK
}

// firstDiagnosticError returns the first "error" value of the TAP YAML
// diagnostics, on one line.
func firstDiagnosticError(out []byte) string {
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, `"error": `); ok {
			if s, err := strconv.Unquote(strings.TrimSuffix(v, ",")); err == nil {
				v = s
			}
			v, _, _ = strings.Cut(v, "\n")
			if len(v) > 200 {
				v = v[:200] + "..."
			}
			return v
		}
	}
	return ""
}

func exitReason(err error, stderr []byte) string {
	var ee *exec.ExitError
	msg := err.Error()
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			msg = "killed by signal " + ws.Signal().String()
		} else {
			msg = fmt.Sprintf("exit status %d", ee.ExitCode())
		}
	}
	if detail := stderrDetail(stderr); detail != "" {
		msg += ": " + detail
	}
	return msg
}

var (
	// Lines of the programs' stderr that say nothing by themselves.
	boringStderr = regexp.MustCompile(`^(exit status \d+|Refer to: .*|failed to (create|start|delete) the container|)$`)
	// logrus-style runtime errors (runc): keep only the message.
	logrusMsg = regexp.MustCompile(`level=error msg="((?:[^"\\]|\\.)*)"`)
)

// stderrDetail picks the most telling line of a program's stderr: the last
// one that is more than a bare exit status or a spec reference.
func stderrDetail(stderr []byte) string {
	lines := strings.Split(strings.TrimSpace(string(stderr)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if boringStderr.MatchString(l) {
			continue
		}
		if m := logrusMsg.FindStringSubmatch(l); m != nil {
			if u, err := strconv.Unquote(`"` + m[1] + `"`); err == nil {
				l = u
			} else {
				l = m[1]
			}
		}
		if len(l) > 200 {
			l = l[:200] + "..."
		}
		return l
	}
	return ""
}

func writeResults(path, rt string, results []result) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# runtime: %s\n", rt)
	for _, r := range results {
		if r.pass {
			fmt.Fprintf(&b, "PASS %s\n", r.name)
		} else {
			fmt.Fprintf(&b, "FAIL %s (%s)\n", r.name, r.reason)
		}
	}
	os.WriteFile(path, b.Bytes(), 0o644)
}
