package archive

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// smallFilesLayer is a layer shaped like a distribution image: many small
// files in a few hundred directories, plus some large ones.
func smallFilesLayer(b *testing.B, files int) []byte {
	b.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	content := bytes.Repeat([]byte("layer content "), 100_000)
	mtime := time.Unix(1_600_000_000, 0)
	for d := 0; d < files/50; d++ {
		dir := fmt.Sprintf("usr/share/pkg%03d/", d)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: mtime}); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < 50; f++ {
			size := 512 + (d*50+f)*977%16000
			if f == 0 && d%20 == 0 {
				size = 1 << 20
			}
			h := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("%sfile%02d", dir, f), Mode: 0o644, Size: int64(size), ModTime: mtime}
			if err := tw.WriteHeader(h); err != nil {
				b.Fatal(err)
			}
			if _, err := tw.Write(content[:size]); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

func BenchmarkApply(b *testing.B) {
	layer := smallFilesLayer(b, 10000)
	base := b.TempDir()
	b.SetBytes(int64(len(layer)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(base, fmt.Sprint(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if _, err := Apply(dir, bytes.NewReader(layer), ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
