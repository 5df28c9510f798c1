package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hullproject/hull/storage/meta"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountUnder(s.Root()) })
	return s
}

// unmountUnder detaches every mount below dir (root filesystems a test
// left mounted when it failed).
func unmountUnder(dir string) {
	raw, _ := os.ReadFile("/proc/self/mountinfo")
	var points []string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		unix.Unmount(p, unix.MNT_DETACH)
	}
}

func bootstrapped(t *testing.T) *Store {
	t.Helper()
	s := newStore(t)
	if _, err := s.Bootstrap("busybox", nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// tarOf builds a layer tar from name → content ("dir/" names are directories).
func tarOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		h := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}
		if strings.HasSuffix(n, "/") {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, files[n])
	}
	tw.Close()
	return buf.Bytes()
}

// snapshot is everything that makes up a store's state: its files (but
// the database and the scratch directories) and its records.
func snapshot(t *testing.T, s *Store) string {
	t.Helper()
	var lines []string
	filepath.Walk(s.Root(), func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(s.Root(), p)
		if rel == "hull.db" || rel == "tmp" || strings.HasPrefix(rel, "tmp/") || rel == "storage/tmp" || strings.HasPrefix(rel, "storage/tmp/") || rel == "content/ingest" {
			if info.IsDir() && rel != "hull.db" && rel != "content/ingest" && rel != "tmp" && rel != "storage/tmp" {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(rel, "storage/layers/") && strings.Count(rel, "/") == 3 {
			// A layer's files are its own business; that it exists is ours.
			lines = append(lines, rel)
			return filepath.SkipDir
		}
		if strings.HasPrefix(rel, "content/ingest/") {
			lines = append(lines, "INGEST "+rel)
			return nil
		}
		lines = append(lines, fmt.Sprintf("%s %v %d", rel, info.Mode(), info.Size()))
		return nil
	})
	s.DB.View(func(tx *meta.Tx) error {
		images, _ := tx.Images()
		for _, i := range images {
			lines = append(lines, fmt.Sprintf("image %s %v %v", i.ID, i.ChainIDs, i.RepoDigests))
		}
		names, _ := tx.Names()
		for n, id := range names {
			lines = append(lines, "name "+n+" "+id.String())
		}
		layers, _ := tx.Layers()
		for _, l := range layers {
			lines = append(lines, fmt.Sprintf("layer %s refs=%d", l.ChainID, l.Refs))
		}
		leases, _ := tx.Leases()
		for _, l := range leases {
			lines = append(lines, "lease "+l.ID)
		}
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestBootstrapBusyboxIsDeterministic(t *testing.T) {
	a, b := bootstrapped(t), bootstrapped(t)
	ia, err := a.Resolve("busybox")
	if err != nil {
		t.Fatal(err)
	}
	ib, err := b.Resolve("busybox:latest")
	if err != nil {
		t.Fatal(err)
	}
	if ia.ID != ib.ID {
		t.Fatalf("two bootstraps gave %s and %s", ia.ID, ib.ID)
	}
	l, err := a.Layers.Get(ia.TopLayer())
	if err != nil {
		t.Fatal(err)
	}
	dir := a.Layers.DiffDir(l)
	var bb, sh unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "bin/busybox"), &bb); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(dir, "bin/sh"), &sh); err != nil {
		t.Fatal(err)
	}
	if bb.Ino != sh.Ino {
		t.Errorf("bin/sh is not a hard link of bin/busybox")
	}
	passwd, err := os.ReadFile(filepath.Join(dir, "etc/passwd"))
	if err != nil || !strings.HasPrefix(string(passwd), "root:x:0:0:") {
		t.Errorf("etc/passwd: %q %v", passwd, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "tmp")); err != nil || st.Mode()&os.ModeSticky == 0 {
		t.Errorf("tmp is not sticky: %v", err)
	}
	cfg, err := a.Config(ia)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Config.Cmd, " ") != "sh" || cfg.OS != "linux" {
		t.Errorf("config: %+v", cfg.Config)
	}
	if _, err := a.Bootstrap("alpine", nil); err == nil {
		t.Error("bootstrap alpine: no error")
	}
}

func TestImportWithChanges(t *testing.T) {
	s := newStore(t)
	var c dockerspec.DockerOCIImageConfig
	for _, ch := range []string{
		`CMD ["/bin/app", "--serve"]`, `ENV A=1 B="two words"`, `EXPOSE 80 53/udp`,
		`LABEL org.example=yes`, `WORKDIR /srv`, `USER 1000:1000`, `STOPSIGNAL SIGINT`,
		`HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost`,
	} {
		if err := ApplyChange(&c, ch); err != nil {
			t.Fatalf("%s: %v", ch, err)
		}
	}
	for _, bad := range []string{"FROM busybox", "EXPOSE 99999", "ENV", "HEALTHCHECK --interval=x CMD a"} {
		if err := ApplyChange(&c, bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	img, err := s.Import(bytes.NewReader(tarOf(t, map[string]string{"bin/": "", "bin/app": "#!x"})), NewImage{Config: c, Names: []string{"example.com/app:1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := s.Config(img)
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Config
	if strings.Join(got.Cmd, " ") != "/bin/app --serve" || got.WorkingDir != "/srv" || got.User != "1000:1000" ||
		got.Labels["org.example"] != "yes" || got.StopSignal != "SIGINT" {
		t.Errorf("config: %+v", got)
	}
	if strings.Join(got.Env, ",") != "A=1,B=two words" {
		t.Errorf("env: %q", got.Env)
	}
	if _, ok := got.ExposedPorts["53/udp"]; !ok {
		t.Errorf("ports: %v", got.ExposedPorts)
	}
	if got.Healthcheck == nil || got.Healthcheck.Test[0] != "CMD-SHELL" || got.Healthcheck.Retries != 2 {
		t.Errorf("healthcheck: %+v", got.Healthcheck)
	}
	if _, err := s.Resolve("example.com/app:1"); err != nil {
		t.Error(err)
	}
	// The layer blob of an import is the uncompressed tar: digest = diff ID.
	if len(cfg.RootFS.DiffIDs) != 1 || !s.Content.Has(cfg.RootFS.DiffIDs[0]) {
		t.Errorf("layer blob %v not stored", cfg.RootFS.DiffIDs)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	src := bootstrapped(t)
	if err := src.Tag("busybox", "example.com/team/bb:v2"); err != nil {
		t.Fatal(err)
	}
	want, _ := src.Resolve("busybox")
	for _, format := range []string{FormatDockerArchive, FormatOCIArchive} {
		t.Run(format, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "img.tar")
			f, err := os.Create(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := src.Save(f, []string{"busybox", "example.com/team/bb:v2"}, format); err != nil {
				t.Fatal(err)
			}
			f.Close()
			dst := newStore(t)
			loaded, err := dst.Load(file, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, l := range loaded {
				if l.Image.ID != want.ID {
					t.Errorf("loaded ID %s, want %s", l.Image.ID, want.ID)
				}
				names = append(names, l.Names...)
			}
			sort.Strings(names)
			if strings.Join(names, " ") != "docker.io/library/busybox:latest example.com/team/bb:v2" {
				t.Errorf("names: %v", names)
			}
			verifyStore(t, dst)
			// Loading again changes nothing.
			before := snapshot(t, dst)
			if _, err := dst.Load(file, nil, nil); err != nil {
				t.Fatal(err)
			}
			if after := snapshot(t, dst); after != before {
				t.Errorf("second load changed the store:\n%s\n---\n%s", before, after)
			}
		})
	}
}

// verifyStore fails the test when Check finds anything wrong.
func verifyStore(t *testing.T, s *Store) {
	t.Helper()
	problems, err := s.Check()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// writeArchive writes a tar of name → content in the given order.
func writeArchive(t *testing.T, entries [][2]string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "a.tar")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, e := range entries {
		tw.WriteHeader(&tar.Header{Name: e[0], Mode: 0o644, Size: int64(len(e[1])), Typeflag: tar.TypeReg})
		io.WriteString(tw, e[1])
	}
	tw.Close()
	f.Close()
	return file
}

func TestLoadBadInputLeavesStoreAsItWas(t *testing.T) {
	s := bootstrapped(t)
	good := filepath.Join(t.TempDir(), "good.tar")
	f, _ := os.Create(good)
	if err := s.Save(f, []string{"busybox"}, FormatDockerArchive); err != nil {
		t.Fatal(err)
	}
	f.Close()
	raw, _ := os.ReadFile(good)

	layer := tarOf(t, map[string]string{"etc/": "", "etc/hello": "hi"})
	diffID := digest.FromBytes(layer)
	config := func(diffIDs ...digest.Digest) string {
		b, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}})
		return string(b)
	}
	cfg := config(diffID)
	cfgName := digest.FromString(cfg).Encoded() + ".json"
	manifest := func(layers ...string) string {
		b, _ := json.Marshal([]dockerManifestEntry{{Config: cfgName, RepoTags: []string{"bad:1"}, Layers: layers}})
		return string(b)
	}
	corrupt := bytes.Replace(layer, []byte("hi"), []byte("ho"), 1)

	ociManifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + digest.FromString(cfg).String() + `","size":` + fmt.Sprint(len(cfg)) + `},"layers":[{"mediaType":"application/vnd.example.unknown","digest":"` + diffID.String() + `","size":` + fmt.Sprint(len(layer)) + `}]}`
	index := func(m string, d digest.Digest) string {
		return `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + d.String() + `","size":` + fmt.Sprint(len(m)) + `}]}`
	}
	cases := map[string]string{
		"truncated":       writeRaw(t, raw[:len(raw)/2]),
		"not a tar":       writeRaw(t, []byte("this is not an archive at all, not even close to one")),
		"no manifest":     writeArchive(t, [][2]string{{"hello", "x"}}),
		"corrupt layer":   writeArchive(t, [][2]string{{cfgName, cfg}, {"l/layer.tar", string(corrupt)}, {"manifest.json", manifest("l/layer.tar")}}),
		"missing layer":   writeArchive(t, [][2]string{{cfgName, cfg}, {"manifest.json", manifest("l/layer.tar")}}),
		"layer count":     writeArchive(t, [][2]string{{cfgName, cfg}, {"l/layer.tar", string(layer)}, {"manifest.json", manifest("l/layer.tar", "l/layer.tar")}}),
		"bad json":        writeArchive(t, [][2]string{{"manifest.json", "[{"}}),
		"bad tag":         writeArchive(t, [][2]string{{cfgName, cfg}, {"l/layer.tar", string(layer)}, {"manifest.json", strings.Replace(manifest("l/layer.tar"), "bad:1", "BAD::x", 1)}}),
		"unknown media":   writeArchive(t, [][2]string{{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`}, {"blobs/sha256/" + digest.FromString(cfg).Encoded(), cfg}, {"blobs/sha256/" + diffID.Encoded(), string(layer)}, {"blobs/sha256/" + digest.FromString(ociManifest).Encoded(), ociManifest}, {"index.json", index(ociManifest, digest.FromString(ociManifest))}}),
		"digest mismatch": writeArchive(t, [][2]string{{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`}, {"blobs/sha256/" + digest.FromString(ociManifest).Encoded(), ociManifest + " "}, {"index.json", index(ociManifest, digest.FromString(ociManifest))}}),
	}
	before := snapshot(t, s)
	for name, file := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := s.Load(file, nil, nil)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if after := snapshot(t, s); after != before {
				t.Errorf("store changed:\n%s\n---\n%s", before, after)
			}
		})
	}
	// Blobs and layers a failed load verified stay out of sight: a prune
	// finds nothing an image needs missing.
	if _, err := s.Prune(false); err != nil {
		t.Fatal(err)
	}
	verifyStore(t, s)
}

func writeRaw(t *testing.T, b []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "raw.tar")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestRemoveRefusesImageInUse(t *testing.T) {
	s := bootstrapped(t)
	img, _ := s.Resolve("busybox")
	if _, err := s.Layers.CreateRootfs("c1", img.ID, img.TopLayer()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Layers.RemoveRootfs("c1") })
	if _, err := s.Layers.Mount("c1"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Remove("busybox", false)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("rmi of an image in use: %v", err)
	}
	if _, err := s.Remove(img.ID.String(), false); !errors.Is(err, ErrConflict) {
		t.Fatalf("rmi by ID of an image in use: %v", err)
	}
	// Forced: the name goes, the image stays for its container.
	rep, err := s.Remove("busybox", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep) != 1 || rep[0].Untagged != "busybox:latest" {
		t.Errorf("reports: %+v", rep)
	}
	if _, err := s.Resolve(img.ID.String()); err != nil {
		t.Errorf("image in use was deleted: %v", err)
	}
	if rep, _ := s.Prune(true); len(rep.Deleted) != 0 {
		t.Errorf("prune -a deleted an image in use: %v", rep.Deleted)
	}
	if err := s.Layers.RemoveRootfs("c1"); err != nil {
		t.Fatal(err)
	}
	rep2, err := s.Prune(false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep2.Deleted) != 2 || rep2.Deleted[0] != img.ID {
		t.Errorf("prune after the container went: %v", rep2.Deleted)
	}
	n := 0
	s.Content.Walk(func(digest.Digest, int64) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d blobs left after the last image went", n)
	}
	ents, _ := os.ReadDir(filepath.Join(s.Layers.Root(), "layers"))
	if len(ents) != 0 {
		t.Errorf("layer directories left: %v", ents)
	}
}

func TestRemoveKeepsSharedLayers(t *testing.T) {
	s := bootstrapped(t)
	base, _ := s.Resolve("busybox")
	// A second image on top of busybox's layer: load a docker-archive
	// holding busybox's layer plus one more.
	file := filepath.Join(t.TempDir(), "bb.tar")
	f, _ := os.Create(file)
	s.Save(f, []string{"busybox"}, FormatDockerArchive)
	f.Close()
	if err := s.Tag("busybox", "other:1"); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Remove("busybox", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep) != 1 || rep[0].Untagged == "" {
		t.Errorf("untag with another name left: %+v", rep)
	}
	if _, err := s.Remove(base.ID.Encoded()[:12], false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve("other:1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("image still there: %v", err)
	}
	// The layer directory went with the last image.
	ents, _ := os.ReadDir(filepath.Join(s.Layers.Root(), "layers"))
	if len(ents) != 0 {
		t.Errorf("layer directories left: %v", ents)
	}
}

func TestReferences(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                     "docker.io/library/busybox:latest",
		"busybox:1.36":                "docker.io/library/busybox:1.36",
		"user/app":                    "docker.io/user/app:latest",
		"127.0.0.1:5000/x/y:v1":       "127.0.0.1:5000/x/y:v1",
		"localhost/app":               "localhost/app:latest",
		"docker.io/library/busybox:1": "docker.io/library/busybox:1",
	} {
		r, err := ParseReference(in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if r.String() != want {
			t.Errorf("%s: %s, want %s", in, r, want)
		}
	}
	if Familiar("docker.io/library/busybox:latest") != "busybox:latest" || Familiar("docker.io/user/app:1") != "user/app:1" {
		t.Error("familiar names")
	}
	for _, bad := range []string{"", "UPPER", "a b", "x:", "sha256:abc", "a@sha256:zz"} {
		if _, err := ParseReference(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestResolveByIDPrefix(t *testing.T) {
	s := bootstrapped(t)
	img, _ := s.Resolve("busybox")
	for _, ref := range []string{img.ID.String(), img.ID.Encoded(), img.ID.Encoded()[:12], img.ID.Encoded()[:4]} {
		got, err := s.Resolve(ref)
		if err != nil || got.ID != img.ID {
			t.Errorf("%s: %v", ref, err)
		}
	}
	if _, err := s.Resolve("nosuchimage"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
}
