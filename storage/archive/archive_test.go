package archive

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hullproject/hull/internal/fstest"
	"github.com/klauspost/compress/zstd"
)

func TestCompressionString(t *testing.T) {
	for c, want := range map[Compression]string{Uncompressed: "uncompressed", Gzip: "gzip", Zstd: "zstd", 9: "Compression(9)"} {
		if got := c.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(c), got, want)
		}
	}
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zstded(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, err := zstd.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// A compressed layer through Decompress and Apply: the returned size is the
// uncompressed tar's (the layer's diff ID covers exactly those bytes), and
// the compressed stream is read to its end (its digest covers all of it).
func TestDecompressAndApply(t *testing.T) {
	layer := mkTar(t, dirEnt("etc/"), reg("etc/hostname", "box\n"), reg("big", strings.Repeat("0123456789", 50000)))
	layer = append(layer, make([]byte, 4096)...) // record padding
	wantSum := sha256.Sum256(layer)
	for _, c := range []struct {
		comp Compression
		data []byte
	}{
		{Uncompressed, layer},
		{Gzip, gzipped(t, layer)},
		{Zstd, zstded(t, layer)},
	} {
		t.Run(c.comp.String(), func(t *testing.T) {
			compressed := bytes.NewReader(c.data)
			rc, comp, err := Decompress(compressed)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if comp != c.comp {
				t.Fatalf("detected %v, want %v", comp, c.comp)
			}
			h := sha256.New()
			dir := t.TempDir()
			n, err := Apply(dir, io.TeeReader(rc, h), ApplyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(layer)) {
				t.Errorf("size %d, want %d", n, len(layer))
			}
			if !bytes.Equal(h.Sum(nil), wantSum[:]) {
				t.Error("tee'd uncompressed stream does not hash to the layer's digest")
			}
			if compressed.Len() != 0 {
				t.Errorf("%d compressed bytes left unread", compressed.Len())
			}
			if fstest.ReadFile(t, filepath.Join(dir, "etc/hostname")) != "box\n" || len(fstest.ReadFile(t, filepath.Join(dir, "big"))) != 500000 {
				t.Error("content not unpacked")
			}
			if err := rc.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

func TestDecompressShortAndBad(t *testing.T) {
	for _, in := range [][]byte{nil, {0x1f}, []byte("ab")} {
		rc, comp, err := Decompress(bytes.NewReader(in))
		if err != nil || comp != Uncompressed {
			t.Fatalf("Decompress(%q) = %v, %v", in, comp, err)
		}
		got, _ := io.ReadAll(rc)
		if !bytes.Equal(got, in) {
			t.Errorf("Decompress(%q) read %q", in, got)
		}
		rc.Close()
	}
	if _, _, err := Decompress(bytes.NewReader([]byte{0x1f, 0x8b, 0})); err == nil {
		t.Error("truncated gzip header accepted")
	}
	// A corrupt gzip body surfaces as an Apply error, not silently.
	bad := gzipped(t, mkTar(t, reg("a", strings.Repeat("x", 100000))))
	bad = bad[:len(bad)/2]
	rc, _, err := Decompress(bytes.NewReader(bad))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := Apply(t.TempDir(), rc, ApplyOptions{}); err == nil {
		t.Error("truncated gzip layer applied without error")
	}
}
