package meta

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func openDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "sub", "meta.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return db
}

// ts is a fixed UTC time: JSON round-trips keep it exactly.
func ts(sec int64) time.Time { return time.Unix(sec, 123456789).UTC() }

func d(s string) digest.Digest { return digest.FromString(s) }

func TestOpenCreatesFileAndBuckets(t *testing.T) {
	db := openDB(t)
	st, err := os.Stat(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("database mode %v, want 0600", st.Mode().Perm())
	}
	// Every lookup works (buckets exist) and finds nothing.
	err = db.View(func(tx *Tx) error {
		if _, err := tx.Image(d("x")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Image: %v", err)
		}
		if _, err := tx.Name("x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Name: %v", err)
		}
		if _, err := tx.Layer(d("x")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Layer: %v", err)
		}
		if _, err := tx.Rootfs("x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Rootfs: %v", err)
		}
		if _, err := tx.Lease("x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lease: %v", err)
		}
		if v := tx.Setting("x"); v != "" {
			t.Errorf("Setting = %q", v)
		}
		imgs, err := tx.Images()
		if err != nil || len(imgs) != 0 {
			t.Errorf("Images = %v, %v", imgs, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRoundTrips(t *testing.T) {
	db := openDB(t)
	img := &Image{
		ID:                d("config"),
		Manifest:          d("manifest"),
		ManifestMediaType: "application/vnd.oci.image.manifest.v1+json",
		ManifestSize:      1234,
		ChainIDs:          []digest.Digest{d("l1"), d("l2")},
		Size:              99999,
		Created:           ts(1_600_000_000),
		Added:             ts(1_700_000_000),
		RepoDigests:       []string{"docker.io/library/x@" + d("manifest").String()},
	}
	layer := &Layer{
		ChainID: d("l2"),
		DiffID:  d("diff2"),
		Parent:  d("l1"),
		Size:    4096,
		Refs:    3,
		Dir:     d("l2").Encoded(),
		Created: ts(1_650_000_000),
	}
	rootfs := &Rootfs{ID: "c1", Image: img.ID, Top: d("l2"), Driver: "overlay", Created: ts(1_660_000_000)}
	lease := &Lease{
		ID: "pull-1", PID: 42, Start: 777, Created: ts(1_670_000_000),
		Blobs:  []digest.Digest{d("b1")},
		Layers: []digest.Digest{d("l1"), d("l2")},
	}
	err := db.Update(func(tx *Tx) error {
		if err := tx.PutImage(img); err != nil {
			return err
		}
		old, err := tx.SetName("docker.io/library/x:latest", img.ID)
		if err != nil {
			return err
		}
		if old != "" {
			t.Errorf("SetName on a new name returned %q", old)
		}
		if err := tx.PutLayer(layer); err != nil {
			return err
		}
		if err := tx.PutRootfs(rootfs); err != nil {
			return err
		}
		if err := tx.PutLease(lease); err != nil {
			return err
		}
		return tx.SetSetting("driver", "overlay")
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}

	err = db.View(func(tx *Tx) error {
		gotImg, err := tx.Image(img.ID)
		if err != nil || !reflect.DeepEqual(gotImg, img) {
			t.Errorf("Image = %+v, %v; want %+v", gotImg, err, img)
		}
		if gotImg != nil && gotImg.TopLayer() != d("l2") {
			t.Errorf("TopLayer = %s", gotImg.TopLayer())
		}
		if id, err := tx.Name("docker.io/library/x:latest"); err != nil || id != img.ID {
			t.Errorf("Name = %s, %v", id, err)
		}
		names, err := tx.Names()
		if err != nil || !reflect.DeepEqual(names, map[string]digest.Digest{"docker.io/library/x:latest": img.ID}) {
			t.Errorf("Names = %v, %v", names, err)
		}
		gotLayer, err := tx.Layer(layer.ChainID)
		if err != nil || !reflect.DeepEqual(gotLayer, layer) {
			t.Errorf("Layer = %+v, %v; want %+v", gotLayer, err, layer)
		}
		layers, err := tx.Layers()
		if err != nil || len(layers) != 1 || !reflect.DeepEqual(layers[0], layer) {
			t.Errorf("Layers = %v, %v", layers, err)
		}
		gotRootfs, err := tx.Rootfs("c1")
		if err != nil || !reflect.DeepEqual(gotRootfs, rootfs) {
			t.Errorf("Rootfs = %+v, %v; want %+v", gotRootfs, err, rootfs)
		}
		all, err := tx.Rootfses()
		if err != nil || len(all) != 1 || !reflect.DeepEqual(all[0], rootfs) {
			t.Errorf("Rootfses = %v, %v", all, err)
		}
		gotLease, err := tx.Lease("pull-1")
		if err != nil || !reflect.DeepEqual(gotLease, lease) {
			t.Errorf("Lease = %+v, %v; want %+v", gotLease, err, lease)
		}
		leases, err := tx.Leases()
		if err != nil || len(leases) != 1 || !reflect.DeepEqual(leases[0], lease) {
			t.Errorf("Leases = %v, %v", leases, err)
		}
		if v := tx.Setting("driver"); v != "overlay" {
			t.Errorf("Setting = %q", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Overwrite and delete everything again.
	err = db.Update(func(tx *Tx) error {
		old, err := tx.SetName("docker.io/library/x:latest", d("other"))
		if err != nil || old != img.ID {
			t.Errorf("SetName returned old %q, %v; want %s", old, err, img.ID)
		}
		for _, err := range []error{
			tx.DeleteImage(img.ID),
			tx.DeleteName("docker.io/library/x:latest"),
			tx.DeleteLayer(layer.ChainID),
			tx.DeleteRootfs("c1"),
			tx.DeleteLease("pull-1"),
			tx.DeleteLease("never-there"),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *Tx) error {
		if _, err := tx.Image(img.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("image after delete: %v", err)
		}
		if _, err := tx.Name("docker.io/library/x:latest"); !errors.Is(err, ErrNotFound) {
			t.Errorf("name after delete: %v", err)
		}
		if _, err := tx.Layer(layer.ChainID); !errors.Is(err, ErrNotFound) {
			t.Errorf("layer after delete: %v", err)
		}
		if _, err := tx.Rootfs("c1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("rootfs after delete: %v", err)
		}
		if _, err := tx.Lease("pull-1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("lease after delete: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTopLayerOfEmptyImage(t *testing.T) {
	if top := (&Image{}).TopLayer(); top != "" {
		t.Errorf("TopLayer of an image without layers = %q", top)
	}
}

func TestUpdateErrorRollsBack(t *testing.T) {
	db := openDB(t)
	// Something committed before must survive the failed transaction.
	if err := db.Update(func(tx *Tx) error { return tx.SetSetting("kept", "1") }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := db.Update(func(tx *Tx) error {
		tx.PutImage(&Image{ID: d("img")})
		tx.SetName("ref", d("img"))
		tx.PutLayer(&Layer{ChainID: d("l")})
		tx.PutRootfs(&Rootfs{ID: "c"})
		tx.PutLease(&Lease{ID: "lease"})
		tx.SetSetting("kept", "2")
		tx.SetSetting("new", "x")
		// Visible inside the transaction...
		if _, err := tx.Image(d("img")); err != nil {
			t.Errorf("own write not visible inside the transaction: %v", err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want the callback's error", err)
	}
	// ...but nothing reached the file.
	err = db.View(func(tx *Tx) error {
		imgs, _ := tx.Images()
		names, _ := tx.Names()
		layers, _ := tx.Layers()
		rootfses, _ := tx.Rootfses()
		leases, _ := tx.Leases()
		if len(imgs)+len(names)+len(layers)+len(rootfses)+len(leases) != 0 {
			t.Errorf("rolled back records found: %v %v %v %v %v", imgs, names, layers, rootfses, leases)
		}
		if v := tx.Setting("kept"); v != "1" {
			t.Errorf("setting kept = %q, want 1", v)
		}
		if v := tx.Setting("new"); v != "" {
			t.Errorf("setting new = %q, want unset", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestViewIsReadOnly(t *testing.T) {
	db := openDB(t)
	err := db.View(func(tx *Tx) error { return tx.SetSetting("x", "y") })
	if err == nil {
		t.Fatal("a write inside View succeeded")
	}
	boom := errors.New("boom")
	if err := db.View(func(*Tx) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("View returned %v, want the callback's error", err)
	}
}

func TestImagesNewestFirst(t *testing.T) {
	db := openDB(t)
	// Created decides; for equal Created the later Added comes first.
	imgs := []*Image{
		{ID: d("middle"), Created: ts(2000), Added: ts(1)},
		{ID: d("oldest"), Created: ts(1000), Added: ts(9)},
		{ID: d("newest"), Created: ts(3000), Added: ts(2)},
		{ID: d("tie-added-early"), Created: ts(2500), Added: ts(10)},
		{ID: d("tie-added-late"), Created: ts(2500), Added: ts(20)},
	}
	err := db.Update(func(tx *Tx) error {
		for _, img := range imgs {
			if err := tx.PutImage(img); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []digest.Digest{d("newest"), d("tie-added-late"), d("tie-added-early"), d("middle"), d("oldest")}
	db.View(func(tx *Tx) error {
		got, err := tx.Images()
		if err != nil {
			t.Fatal(err)
		}
		var ids []digest.Digest
		for _, i := range got {
			ids = append(ids, i.ID)
		}
		if !slices.Equal(ids, want) {
			t.Errorf("Images order = %v, want %v", ids, want)
		}
		return nil
	})
}

func TestNamesOfSorted(t *testing.T) {
	db := openDB(t)
	a, b := d("a"), d("b")
	err := db.Update(func(tx *Tx) error {
		for ref, id := range map[string]digest.Digest{
			"zz.io/z:1":   a,
			"docker.io/a": a,
			"m.io/m:2":    a,
			"other:1":     b,
			"m.io/m:10":   a,
		} {
			if _, err := tx.SetName(ref, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *Tx) error {
		got, err := tx.NamesOf(a)
		want := []string{"docker.io/a", "m.io/m:10", "m.io/m:2", "zz.io/z:1"}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("NamesOf(a) = %v, %v; want %v", got, err, want)
		}
		got, err = tx.NamesOf(b)
		if err != nil || !slices.Equal(got, []string{"other:1"}) {
			t.Errorf("NamesOf(b) = %v, %v", got, err)
		}
		got, err = tx.NamesOf(d("none"))
		if err != nil || len(got) != 0 {
			t.Errorf("NamesOf(none) = %v, %v", got, err)
		}
		return nil
	})
}

func TestLeaseAlive(t *testing.T) {
	own, err := NewLease("own")
	if err != nil {
		t.Fatal(err)
	}
	if own.PID != os.Getpid() || own.Start == 0 || own.ID != "own" || own.Created.IsZero() {
		t.Errorf("NewLease = %+v", own)
	}
	if !own.Alive() {
		t.Error("a lease of this process is not alive")
	}
	// Same pid, other start time: a reused pid.
	reused := *own
	reused.Start++
	if reused.Alive() {
		t.Error("a lease whose start time does not match is alive")
	}

	// A process that ran and was reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	dead := &Lease{ID: "dead", PID: cmd.Process.Pid, Start: own.Start}
	if dead.Alive() {
		t.Errorf("lease of exited pid %d is alive", dead.PID)
	}

	// A live child, then killed: alive only while it runs.
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Skipf("cannot run sleep: %v", err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	st, err := processStart(child.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if st < own.Start {
		t.Errorf("child started at %d, before this process (%d)", st, own.Start)
	}
	l := &Lease{ID: "child", PID: child.Process.Pid, Start: st}
	if !l.Alive() {
		t.Error("lease of a running child is not alive")
	}
	child.Process.Kill()
	child.Wait()
	if l.Alive() {
		t.Error("lease of a killed child is alive")
	}
}

// processStart must find the start time after the command name, which
// may hold spaces and parentheses.
func TestProcessStartOddCommandName(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	raw, err := os.ReadFile(sleep)
	if err != nil {
		t.Skip(err)
	}
	odd := filepath.Join(t.TempDir(), "a) b (c) 1 2")
	if err := os.WriteFile(odd, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	child := exec.Command(odd, "60")
	if err := child.Start(); err != nil {
		t.Skipf("cannot run a copy of sleep: %v", err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(child.Process.Pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(stat), "(a) b (c) 1 2)") {
		t.Skipf("command name not as expected: %s", stat)
	}
	own, err := processStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	st, err := processStart(child.Process.Pid)
	if err != nil {
		t.Fatalf("processStart: %v", err)
	}
	// Start times are clock ticks since boot: the child's is at or after
	// ours and not after now.
	up, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	secs, _ := strconv.ParseFloat(strings.Fields(string(up))[0], 64)
	if st < own || float64(st) > (secs+1)*100 {
		t.Errorf("start %d of the child is not between ours (%d) and now (%.0f ticks)", st, own, secs*100)
	}
	if !(&Lease{PID: child.Process.Pid, Start: st}).Alive() {
		t.Error("lease of a running child with an odd name is not alive")
	}
}

func TestConcurrentHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db1, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	db2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		db := db1
		if i%2 == 1 {
			db = db2
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- db.Update(func(tx *Tx) error {
				v := 0
				if s := tx.Setting("counter"); s != "" {
					var err error
					if v, err = strconv.Atoi(s); err != nil {
						return err
					}
				}
				// A record per update too, to grow the file while others
				// read it.
				if err := tx.PutLayer(&Layer{ChainID: d(strconv.Itoa(i)), Refs: i}); err != nil {
					return err
				}
				return tx.SetSetting("counter", strconv.Itoa(v+1))
			})
		}()
		// Readers interleaved with the writers.
		go func() {
			defer wg.Done()
			errs <- db.View(func(tx *Tx) error {
				s := tx.Setting("counter")
				if s == "" {
					return nil
				}
				_, err := strconv.Atoi(s)
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("transaction: %v", err)
		}
	}
	for _, db := range []*DB{db1, db2} {
		err := db.View(func(tx *Tx) error {
			if v := tx.Setting("counter"); v != strconv.Itoa(n) {
				t.Errorf("counter = %q, want %d", v, n)
			}
			layers, err := tx.Layers()
			if err != nil {
				return err
			}
			if len(layers) != n {
				t.Errorf("%d layer records, want %d", len(layers), n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
