package cgroups

import (
	"errors"
	"fmt"
	"time"
)

// freezeTimeout bounds how long Freeze waits. Freezing normally takes
// microseconds; tasks stuck in uninterruptible sleep (e.g. on NFS) can delay
// it indefinitely, and the caller then gets an error instead of a hang.
const freezeTimeout = 10 * time.Second

func (m *manager) Freeze() error {
	if d := m.v1Dir("freezer"); d != "" {
		return freezeV1(d)
	}
	if m.v2 != "" {
		return setFrozenV2(m.v2, true)
	}
	return notAvailable("freezer")
}

func (m *manager) Thaw() error {
	if d := m.v1Dir("freezer"); d != "" {
		return thawV1(d)
	}
	if m.v2 != "" {
		return setFrozenV2(m.v2, false)
	}
	return notAvailable("freezer")
}

func (m *manager) Paused() (bool, error) {
	if d := m.v1Dir("freezer"); d != "" {
		s, err := readFile(d, "freezer.state")
		if err != nil {
			return false, err
		}
		return s == "FROZEN", nil
	}
	if m.v2 != "" {
		return frozenV2(m.v2)
	}
	return false, notAvailable("freezer")
}

// freezeV1 writes FROZEN and polls freezer.state. The state can stay
// FREEZING when a task was forking or sleeping uninterruptibly at the time;
// writing FROZEN again makes the kernel retry those tasks.
func freezeV1(dir string) error {
	deadline := time.Now().Add(freezeTimeout)
	delay := 100 * time.Microsecond
	for i := 0; ; i++ {
		if i%10 == 0 {
			if err := writeFile(dir, "freezer.state", "FROZEN"); err != nil {
				return err
			}
		}
		state, err := readFile(dir, "freezer.state")
		if err != nil {
			return err
		}
		if state == "FROZEN" {
			return nil
		}
		if time.Now().After(deadline) {
			// Leave the cgroup usable rather than half frozen.
			terr := writeFile(dir, "freezer.state", "THAWED")
			return errors.Join(fmt.Errorf("freeze %s: still %s after %v", dir, state, freezeTimeout), terr)
		}
		time.Sleep(delay)
		if delay < 10*time.Millisecond {
			delay *= 2
		}
	}
}

func thawV1(dir string) error {
	deadline := time.Now().Add(freezeTimeout)
	for {
		if err := writeFile(dir, "freezer.state", "THAWED"); err != nil {
			return err
		}
		state, err := readFile(dir, "freezer.state")
		if err != nil {
			return err
		}
		// A cgroup whose parent is frozen stays FROZEN; that is not ours
		// to undo, so give up after the deadline.
		if state == "THAWED" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("thaw %s: still %s after %v", dir, state, freezeTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// setFrozenV2 writes cgroup.freeze and waits for cgroup.events to report the
// new state; the write only requests the change.
func setFrozenV2(dir string, freeze bool) error {
	want := "0"
	if freeze {
		want = "1"
	}
	if err := writeFile(dir, "cgroup.freeze", want); err != nil {
		return err
	}
	deadline := time.Now().Add(freezeTimeout)
	delay := 100 * time.Microsecond
	for {
		frozen, err := frozenV2(dir)
		if err != nil {
			return err
		}
		if frozen == freeze {
			return nil
		}
		if time.Now().After(deadline) {
			var undo error
			if freeze {
				undo = writeFile(dir, "cgroup.freeze", "0")
			}
			return errors.Join(fmt.Errorf("set %s/cgroup.freeze=%s: state not reached after %v", dir, want, freezeTimeout), undo)
		}
		time.Sleep(delay)
		if delay < 10*time.Millisecond {
			delay *= 2
		}
	}
}

func frozenV2(dir string) (bool, error) {
	ev, err := readFile(dir, "cgroup.events")
	if err != nil {
		return false, err
	}
	return parseKeyed(ev)["frozen"] == 1, nil
}
