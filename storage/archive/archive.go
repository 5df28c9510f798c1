// Package archive unpacks OCI image layers safely and writes layer tars.
//
// Layers are tar streams, optionally gzip- or zstd-compressed. Apply
// unpacks one into a directory without ever writing outside it, in one of
// two whiteout modes (overlayfs lower layer, or deletion on a full copy for
// the vfs driver). WriteDir, WriteDiff and WriteTreeDiff produce layer tars
// from a tree, an overlayfs upper directory, or two trees.
package archive

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Compression is the compression of a layer stream.
type Compression int

const (
	Uncompressed Compression = iota
	Gzip
	Zstd
)

func (c Compression) String() string {
	switch c {
	case Uncompressed:
		return "uncompressed"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// Names the OCI image layer spec gives special meaning to.
const (
	whiteoutPrefix = ".wh."
	// whiteoutMeta prefixes aufs metadata entries (".wh..wh.plnk"...);
	// of those only the opaque marker means something to us.
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"

	overlayOpaque = "trusted.overlay.opaque"
	// overlayPrefix xattrs are overlayfs bookkeeping (opaque, redirect,
	// origin...): they are never carried in or taken from a layer tar,
	// since they would let a layer steer overlayfs lookups.
	overlayPrefix = "trusted.overlay."
	paxXattr      = "SCHILY.xattr."
)

// ErrEscape is returned (wrapped) for entries or hardlink targets that
// would resolve outside the layer directory.
var ErrEscape = errors.New("path escapes the layer")

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Decompress peeks at the magic bytes of r and returns a reader of the
// uncompressed stream. Close releases decoder resources (not r).
func Decompress(r io.Reader) (io.ReadCloser, Compression, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, Uncompressed, fmt.Errorf("detect layer compression: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, Gzip, fmt.Errorf("open gzip layer: %w", err)
		}
		return zr, Gzip, nil
	case bytes.HasPrefix(magic, zstdMagic) || isZstdSkippable(magic):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, Zstd, fmt.Errorf("open zstd layer: %w", err)
		}
		// IOReadCloser's Close stops the decoder's goroutines.
		return zr.IOReadCloser(), Zstd, nil
	}
	return io.NopCloser(br), Uncompressed, nil
}

// isZstdSkippable reports a zstd skippable frame (magic 0x184D2A5?,
// little endian), which seekable zstd variants put before the data.
func isZstdSkippable(m []byte) bool {
	return len(m) == 4 && m[0]&0xf0 == 0x50 && m[1] == 0x2a && m[2] == 0x4d && m[3] == 0x18
}
