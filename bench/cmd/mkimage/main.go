// Command mkimage writes a deterministic synthetic container image for the
// image-load benchmark (bench/images.sh):
//
//	mkimage -o FILE [-format docker-archive|oci-archive] [-size-mb 320]
//	        [-layers 12] [-tag bench/big:latest] [-seed 1]
//
// The default output is a docker-archive tar, what `docker save` writes and
// `podman load` reads; -format oci-archive writes an OCI image layout tar.
// Layers are uncompressed tars of about -size-mb MiB in total, shaped like a
// real image so that loaders pay for what they pay for in practice:
//
//   - layer 0 is a base system: merged-/usr symlinks, /etc files, a
//     hardlinked binary and a few thousand small files;
//   - most layers hold thousands of 1-16 KiB files in nested directories,
//     with a symlink and a hardlink every few hundred files;
//   - every fourth layer from layer 2 holds a few large files (tens of MB);
//   - the last layer deletes files and a directory of earlier layers with
//     ".wh." whiteouts, makes a directory opaque (".wh..wh..opq") and
//     replaces a file.
//
// Contents are pseudo-random (ChaCha8), seeded by -seed and the layer
// number: the same flags give a byte-identical archive, and compressors
// find nothing trivial (small files are random text, the rest random bytes).
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	_ "crypto/sha256" // go-digest finds hashes only by registration
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"runtime"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// epoch is the timestamp of every file and history entry: a fixed time
// keeps the archive byte-identical from run to run.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	kib = 1 << 10
	mib = 1 << 20
	// bigShare is the part of the total size in large-file layers; the
	// rest goes to small files, which dominate real images by count.
	bigShare = 0.4
	// minLayers: base, the small layer the whiteouts target, one big
	// layer and the whiteout layer.
	minLayers = 4
	// The whiteout layer deletes usr/lib/pkg01/mod1/sub1 and makes
	// usr/lib/pkg01/mod0 opaque, so layer 1 always has at least this many
	// files (see smallPath) whatever the size budget.
	minLayer1Files = 2 * filesPerMod
	filesPerSub    = 40
	subsPerMod     = 10
	filesPerMod    = filesPerSub * subsPerMod
)

type options struct {
	out    string
	format string
	sizeMB int
	layers int
	tag    string
	seed   uint64
}

func main() {
	var o options
	flag.StringVar(&o.out, "o", "", "output `file` (required)")
	flag.StringVar(&o.format, "format", "docker-archive", "docker-archive or oci-archive")
	flag.IntVar(&o.sizeMB, "size-mb", 320, "total uncompressed layer size in MiB")
	flag.IntVar(&o.layers, "layers", 12, fmt.Sprintf("number of layers (at least %d)", minLayers))
	flag.StringVar(&o.tag, "tag", "bench/big:latest", "image name and tag")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the pseudo-random contents")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s -o FILE [flags]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if o.out == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.format != "docker-archive" && o.format != "oci-archive" {
		return fmt.Errorf("-format %q: want docker-archive or oci-archive", o.format)
	}
	if o.layers < minLayers {
		return fmt.Errorf("-layers %d: need at least %d", o.layers, minLayers)
	}
	if o.sizeMB < 1 {
		return fmt.Errorf("-size-mb %d: must be positive", o.sizeMB)
	}
	repo, tag, err := splitTag(o.tag)
	if err != nil {
		return err
	}

	// Write next to the target and rename at the end, so an interrupted
	// run never leaves a truncated archive under the real name.
	tmp := o.out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after the rename
	bw := bufio.NewWriterSize(f, 4*mib)
	a := &archive{tw: tar.NewWriter(bw)}

	if o.format == "oci-archive" {
		// oci-layout first: it is what identifies the tar as a layout.
		layout, err := json.Marshal(v1.ImageLayout{Version: v1.ImageLayoutVersion})
		if err == nil {
			err = a.file(v1.ImageLayoutFile, layout)
		}
		if err != nil {
			return err
		}
	}
	plan := makePlan(o)
	var layers []builtLayer
	err = buildLayers(plan, func(l builtLayer) error {
		layers = append(layers, builtLayer{digest: l.digest, size: l.size, role: l.role})
		if o.format == "docker-archive" {
			return a.file(l.digest.Encoded()+"/layer.tar", l.data)
		}
		return a.file("blobs/sha256/"+l.digest.Encoded(), l.data)
	})
	if err == nil {
		if o.format == "docker-archive" {
			err = writeDockerMeta(a, layers, repo, tag)
		} else {
			err = writeOCIMeta(a, layers, repo, tag)
		}
	}
	if err == nil {
		err = a.tw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, o.out)
}

// splitTag splits "name:tag" at the last colon after the last slash, so a
// registry port ("host:5000/name") is not taken for a tag.
func splitTag(ref string) (name, tag string, err error) {
	i := strings.LastIndex(ref, ":")
	if i <= 0 || i < strings.LastIndex(ref, "/") || i == len(ref)-1 {
		return "", "", fmt.Errorf("-tag %q: want NAME:TAG", ref)
	}
	return ref[:i], ref[i+1:], nil
}

// qualify adds Docker Hub's implied host (and library/ for one-component
// names) the way docker does: the first component is a host only if it
// has a dot or a port or is localhost.
func qualify(name string) string {
	first, _, found := strings.Cut(name, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return name
	}
	if !found {
		name = "library/" + name
	}
	return "docker.io/" + name
}

// ---------------------------------------------------------------------------
// Layer plan and parallel building.

type role int

const (
	roleBase role = iota
	roleSmall
	roleBig
	roleWhiteout
)

func (r role) String() string {
	return [...]string{"base system", "small files", "large files", "whiteouts"}[r]
}

type layerPlan struct {
	index  int
	role   role
	budget int64 // target size of the layer tar in bytes
	seed   uint64
}

func makePlan(o options) []layerPlan {
	roles := make([]role, o.layers)
	nBig := 0
	for i := range roles {
		switch {
		case i == 0:
			roles[i] = roleBase
		case i == o.layers-1:
			roles[i] = roleWhiteout
		case i >= 2 && (i-2)%4 == 0:
			roles[i] = roleBig
			nBig++
		default:
			roles[i] = roleSmall
		}
	}
	total := int64(o.sizeMB) * mib
	bigEach := int64(float64(total) * bigShare / float64(nBig))
	smallEach := (total - bigEach*int64(nBig)) / int64(o.layers-nBig)
	plan := make([]layerPlan, o.layers)
	for i, r := range roles {
		b := smallEach
		if r == roleBig {
			b = bigEach
		}
		plan[i] = layerPlan{index: i, role: r, budget: b, seed: o.seed}
	}
	return plan
}

type builtLayer struct {
	role   role
	data   []byte
	digest digest.Digest
	size   int64
}

// buildLayers builds the layers on all CPUs and hands them to emit in
// order. A layer's slot is only freed once emit has written it, which
// bounds memory to about GOMAXPROCS layers however the builds finish.
func buildLayers(plan []layerPlan, emit func(builtLayer) error) error {
	type result struct {
		l   builtLayer
		err error
	}
	slots := make(chan struct{}, runtime.GOMAXPROCS(0))
	results := make([]chan result, len(plan))
	for i := range results {
		results[i] = make(chan result, 1)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i, p := range plan {
			select {
			case slots <- struct{}{}:
			case <-stop:
				return
			}
			go func() {
				data, err := buildLayer(p)
				results[i] <- result{
					l:   builtLayer{role: p.role, data: data, digest: digest.FromBytes(data), size: int64(len(data))},
					err: err,
				}
			}()
		}
	}()
	for i := range plan {
		r := <-results[i]
		if r.err != nil {
			return fmt.Errorf("layer %d: %w", i, r.err)
		}
		if err := emit(r.l); err != nil {
			return err
		}
		<-slots
	}
	return nil
}

// ---------------------------------------------------------------------------
// Layer contents.

// layerWriter writes one layer tar into memory.
type layerWriter struct {
	buf     bytes.Buffer
	tw      *tar.Writer
	dirs    map[string]bool // directories already in this layer
	fill    *rand.ChaCha8   // file contents
	rng     *rand.Rand      // sizes and choices
	scratch []byte
	err     error
}

func newLayerWriter(p layerPlan) *layerWriter {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], p.seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(p.index))
	copy(key[16:], "mkimage contents")
	l := &layerWriter{
		dirs:    map[string]bool{},
		fill:    rand.NewChaCha8(key),
		rng:     rand.New(rand.NewPCG(p.seed, uint64(p.index)<<32|0x6d6b)),
		scratch: make([]byte, mib),
	}
	// Big layers are one allocation instead of a doubling series.
	l.buf.Grow(int(p.budget) + mib)
	l.tw = tar.NewWriter(&l.buf)
	return l
}

func (l *layerWriter) header(h *tar.Header) {
	if l.err != nil {
		return
	}
	// Only a fixed mtime: access and change times would make
	// archive/tar write PAX records, which real layers rarely have.
	h.ModTime = epoch
	h.Uname, h.Gname = "root", "root"
	l.err = l.tw.WriteHeader(h)
}

// dir adds name and any missing parents, as `docker build` layers do.
func (l *layerWriter) dir(name string, mode int64) {
	if name == "." || name == "" || l.dirs[name] {
		return
	}
	l.dir(path.Dir(name), 0o755)
	l.dirs[name] = true
	l.header(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode})
}

// file adds a regular file of size pseudo-random bytes; text files use a
// 64-letter alphabet with line breaks, which compresses like source or
// config files (about 25%) rather than not at all.
func (l *layerWriter) file(name string, size int64, mode int64, text bool) {
	l.dir(path.Dir(name), 0o755)
	l.header(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size})
	for left := size; left > 0 && l.err == nil; {
		n := min(left, int64(len(l.scratch)))
		b := l.scratch[:n]
		_, _ = l.fill.Read(b) // never fails
		if text {
			toText(b)
		}
		_, l.err = l.tw.Write(b)
		left -= n
	}
}

const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _"

func toText(b []byte) {
	for i, c := range b {
		if c < 4 { // about one line break every 64 bytes
			b[i] = '\n'
		} else {
			b[i] = alphabet[c&63]
		}
	}
}

// content adds a small file with given contents.
func (l *layerWriter) content(name, s string, mode int64) {
	l.dir(path.Dir(name), 0o755)
	l.header(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(s))})
	if l.err == nil {
		_, l.err = io.WriteString(l.tw, s)
	}
}

func (l *layerWriter) symlink(name, target string) {
	l.dir(path.Dir(name), 0o755)
	l.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777})
}

// hardlink adds name as a link to target, which must be earlier in this
// layer (tar hardlinks cannot cross layers). mode repeats the target's, as
// `docker save` does, for extractors that chmod every entry.
func (l *layerWriter) hardlink(name, target string, mode int64) {
	l.dir(path.Dir(name), 0o755)
	l.header(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: mode})
}

// whiteout deletes name (a file or a whole directory) of a lower layer.
func (l *layerWriter) whiteout(name string) {
	l.content(path.Join(path.Dir(name), ".wh."+path.Base(name)), "", 0o644)
}

// opaque hides everything lower layers have in dir; this layer's own
// entries in dir, written after it, stay.
func (l *layerWriter) opaque(dir string) {
	l.dir(dir, 0o755)
	l.content(dir+"/.wh..wh..opq", "", 0o644)
}

func (l *layerWriter) finish() ([]byte, error) {
	if l.err == nil {
		l.err = l.tw.Close()
	}
	return l.buf.Bytes(), l.err
}

// smallPath is where small file n of a layer lives: usr/lib/pkgNN/modA/
// subB/fileC, four levels with 40 files per leaf directory.
func smallPath(layer, n int) string {
	ext := [...]string{".py", ".so", ".txt", ".json", ".h"}[n%5]
	return fmt.Sprintf("usr/lib/pkg%02d/mod%d/sub%d/file%02d%s",
		layer, n/filesPerMod, n/filesPerSub%subsPerMod, n%filesPerSub, ext)
}

// smallFiles fills the layer with small files until it reaches its budget
// (and at least minFiles files), with a symlink every 300 files and a
// hardlink every 500.
func (l *layerWriter) smallFiles(p layerPlan, minFiles int) {
	for n := 0; l.err == nil && (n < minFiles || int64(l.buf.Len()) < p.budget); n++ {
		name := smallPath(p.index, n)
		size := int64(1*kib + l.rng.IntN(15*kib+1))
		text := n%5 != 1 // .so files are binary
		mode := int64(0o644)
		if !text {
			mode = 0o755
		}
		l.file(name, size, mode, text)
		if n%300 == 299 {
			l.symlink(name+".link", path.Base(name))
		}
		if n%500 == 499 {
			l.hardlink(name+".hard", name, mode)
		}
	}
}

func buildLayer(p layerPlan) ([]byte, error) {
	l := newLayerWriter(p)
	switch p.role {
	case roleBase:
		// Merged /usr, as in current Debian and Fedora images.
		for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
			l.symlink(d, "usr/"+d)
		}
		for _, d := range []string{"usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "var/log", "home", "dev", "proc", "sys", "run"} {
			l.dir(d, 0o755)
		}
		l.dir("tmp", 0o1777)
		l.dir("root", 0o700)
		l.content("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", 0o644)
		l.content("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)
		l.content("etc/hostname", "bench\n", 0o644)
		l.content("etc/motd", "deleted by the whiteout layer\n", 0o644)
		l.content("etc/os-release", "NAME=\"mkimage\"\nID=mkimage\nVERSION_ID=1\n", 0o644)
		// Absolute and dangling, as /etc/localtime often is in images.
		l.symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
		l.file("usr/bin/bench-app", 2*mib, 0o755, false)
		l.hardlink("usr/bin/bench-app2", "usr/bin/bench-app", 0o755)
		l.symlink("usr/bin/app", "bench-app")
		l.file("usr/lib/libbench.so.1.0", 512*kib, 0o755, false)
		l.symlink("usr/lib/libbench.so.1", "libbench.so.1.0")
		l.smallFiles(p, 0)
	case roleSmall:
		minFiles := 0
		if p.index == 1 {
			minFiles = minLayer1Files
		}
		l.smallFiles(p, minFiles)
	case roleBig:
		// 2 to 4 files sharing the budget unevenly, so sizes vary
		// from a few MB to tens of MB.
		n := 2 + l.rng.IntN(3)
		weights := make([]int64, n)
		var sum int64
		for i := range weights {
			weights[i] = 1 + l.rng.Int64N(4)
			sum += weights[i]
		}
		dir := fmt.Sprintf("opt/data%02d", p.index)
		l.content(dir+"/README", "large pseudo-random blobs\n", 0o644)
		for i, w := range weights {
			name := fmt.Sprintf("%s/blob%d.bin", dir, i)
			l.file(name, p.budget*w/sum-2*kib, 0o644, false)
		}
		l.hardlink(dir+"/blob0.bin.hard", dir+"/blob0.bin", 0o644)
	case roleWhiteout:
		l.whiteout("etc/motd")                          // a file of the base layer
		l.whiteout("usr/lib/pkg01/mod1/sub1")           // a directory of layer 1
		l.whiteout("usr/lib/pkg01/mod1/sub2/file00.py") // one file
		l.whiteout("opt/data02/blob1.bin")              // a large file: the layer's bytes stay
		l.opaque("usr/lib/pkg01/mod0")
		for i := range 20 {
			l.file(fmt.Sprintf("usr/lib/pkg01/mod0/new%02d.txt", i), int64(2*kib+i*100), 0o644, true)
		}
		l.content("etc/hostname", "bench-replaced\n", 0o644)
		l.smallFiles(p, 0)
	}
	return l.finish()
}

// ---------------------------------------------------------------------------
// Archive formats.

// archive is the outer tar (docker-archive or oci-archive).
type archive struct {
	tw   *tar.Writer
	dirs map[string]bool
}

// file writes name, preceded by entries for its directories, which some
// extractors need to create them with sane modes.
func (a *archive) file(name string, data []byte) error {
	if err := a.dir(path.Dir(name)); err != nil {
		return err
	}
	if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := a.tw.Write(data)
	return err
}

func (a *archive) dir(name string) error {
	if name == "." || a.dirs[name] {
		return nil
	}
	if err := a.dir(path.Dir(name)); err != nil {
		return err
	}
	if a.dirs == nil {
		a.dirs = map[string]bool{}
	}
	a.dirs[name] = true
	return a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: epoch})
}

func imageConfig(layers []builtLayer) v1.Image {
	img := v1.Image{
		Created: &epoch,
		Platform: v1.Platform{
			Architecture: "amd64",
			OS:           "linux",
		},
		Config: v1.ImageConfig{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd:        []string{"/usr/bin/bench-app"},
			WorkingDir: "/",
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	for i, l := range layers {
		t := epoch.Add(time.Duration(i) * time.Minute)
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, l.digest)
		img.History = append(img.History, v1.History{
			Created:   &t,
			CreatedBy: fmt.Sprintf("mkimage: layer %d (%s)", i, l.role),
		})
	}
	// A metadata-only step, as CMD in a Dockerfile: loaders must match
	// history to layers by skipping empty_layer entries.
	t := epoch.Add(time.Duration(len(layers)) * time.Minute)
	img.History = append(img.History, v1.History{Created: &t, CreatedBy: `CMD ["/usr/bin/bench-app"]`, EmptyLayer: true})
	return img
}

func writeDockerMeta(a *archive, layers []builtLayer, repo, tag string) error {
	config, err := json.Marshal(imageConfig(layers))
	if err != nil {
		return err
	}
	configName := digest.FromBytes(config).Encoded() + ".json"
	if err := a.file(configName, config); err != nil {
		return err
	}
	type manifestEntry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	m := []manifestEntry{{Config: configName, RepoTags: []string{repo + ":" + tag}}}
	for _, l := range layers {
		m[0].Layers = append(m[0].Layers, l.digest.Encoded()+"/layer.tar")
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := a.file("manifest.json", manifest); err != nil {
		return err
	}
	// The legacy file `docker save` still writes: name -> tag -> top
	// layer directory.
	repos, err := json.Marshal(map[string]map[string]string{repo: {tag: layers[len(layers)-1].digest.Encoded()}})
	if err != nil {
		return err
	}
	return a.file("repositories", repos)
}

func writeOCIMeta(a *archive, layers []builtLayer, repo, tag string) error {
	config, err := json.Marshal(imageConfig(layers))
	if err != nil {
		return err
	}
	blob := func(b []byte) error { return a.file("blobs/sha256/"+digest.FromBytes(b).Encoded(), b) }
	if err := blob(config); err != nil {
		return err
	}
	m := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config: v1.Descriptor{
			MediaType: v1.MediaTypeImageConfig,
			Digest:    digest.FromBytes(config),
			Size:      int64(len(config)),
		},
	}
	for _, l := range layers {
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: v1.MediaTypeImageLayer, Digest: l.digest, Size: l.size})
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := blob(manifest); err != nil {
		return err
	}
	index := v1.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: v1.MediaTypeImageManifest,
			Digest:    digest.FromBytes(manifest),
			Size:      int64(len(manifest)),
			Platform:  &v1.Platform{Architecture: "amd64", OS: "linux"},
			Annotations: map[string]string{
				// The full reference, which podman and skopeo take as
				// the image name; containerd reads its own key, in its
				// fully qualified form.
				v1.AnnotationRefName:       repo + ":" + tag,
				"io.containerd.image.name": qualify(repo) + ":" + tag,
			},
		}},
	}
	idx, err := json.Marshal(index)
	if err != nil {
		return err
	}
	return a.file("index.json", idx)
}
