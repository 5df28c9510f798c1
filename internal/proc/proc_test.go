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
