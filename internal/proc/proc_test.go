package proc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func TestAlive(t *testing.T) {
	if !Alive(os.Getpid(), "") || !Alive(os.Getpid(), "proc.test") {
		t.Error("this process is not alive")
	}
	if Alive(os.Getpid(), "somethingelse") {
		t.Error("wrong command name matched")
	}
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
	if !AliveFromFile(pidFile, "sleep") {
		t.Error("sleep is not alive")
	}
	cmd.Process.Kill()
	// Not reaped yet: a zombie, which counts as gone.
	for i := 0; i < 100 && AliveFromFile(pidFile, "sleep"); i++ {
		exec.Command("true").Run()
	}
	if AliveFromFile(pidFile, "sleep") {
		t.Error("a killed, unreaped process counts as alive")
	}
	cmd.Wait()
	if AliveFromFile(filepath.Join(t.TempDir(), "none"), "") {
		t.Error("a missing pid file counts as alive")
	}
}

func TestReadStat(t *testing.T) {
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.Comm != "proc.test" || st.PPid != os.Getppid() || st.StartTime == 0 || st.Gone() {
		t.Errorf("own stat: %+v", st)
	}
	// A command name with a space and a parenthesis in it.
	odd := filepath.Join(t.TempDir(), "x) (y")
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	raw, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(odd, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	st, err = ReadStat(cmd.Process.Pid)
	if err != nil || st.Comm != "x) (y" || st.PPid != os.Getpid() || st.Gone() {
		t.Errorf("stat of %q: %+v %v", odd, st, err)
	}
	if _, err := ReadStat(1 << 30); err == nil {
		t.Error("a pid that cannot exist: no error")
	}
}
