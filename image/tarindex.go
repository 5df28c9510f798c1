package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// tarIndex maps the files of an archive (docker-archive, oci-archive) to
// their place in it, so each blob is read straight from the file with one
// pass over the headers and no copy to a temporary directory.
type tarIndex struct {
	f       *os.File
	entries map[string]tarEntry
}

type tarEntry struct {
	offset, size int64
	link         string // symlink or hardlink target, already cleaned
	typ          byte
}

// offsetReader tracks how far tar.Reader has read, and lets it seek over
// file contents instead of reading them.
type offsetReader struct {
	f   *os.File
	off int64
}

func (o *offsetReader) Read(p []byte) (int, error) {
	n, err := o.f.Read(p)
	o.off += int64(n)
	return n, err
}

func (o *offsetReader) Seek(offset int64, whence int) (int64, error) {
	n, err := o.f.Seek(offset, whence)
	if err == nil {
		o.off = n
	}
	return n, err
}

func indexTar(f *os.File) (*tarIndex, error) {
	or := &offsetReader{f: f}
	tr := tar.NewReader(or)
	idx := &tarIndex{f: f, entries: map[string]tarEntry{}}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("read archive: truncated tar")
			}
			return nil, fmt.Errorf("read archive: %w", err)
		}
		name := cleanArchivePath(h.Name)
		e := tarEntry{offset: or.off, size: h.Size, typ: h.Typeflag}
		switch h.Typeflag {
		case tar.TypeSymlink:
			target := h.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			e.link = cleanArchivePath(target)
		case tar.TypeLink:
			e.link = cleanArchivePath(h.Linkname)
		}
		idx.entries[name] = e
	}
	// Every file must be whole: a truncated last blob shows as a short file.
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	for name, e := range idx.entries {
		if e.typ == tar.TypeReg && e.offset+e.size > st.Size() {
			return nil, fmt.Errorf("read archive: %s is truncated", name)
		}
	}
	return idx, nil
}

// cleanArchivePath makes archive names comparable: no leading "./" or "/",
// and no way above the archive's root.
func cleanArchivePath(p string) string {
	p = path.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}

// lookup follows links inside the archive to a regular file.
func (t *tarIndex) lookup(name string) (tarEntry, error) {
	name = cleanArchivePath(name)
	for hops := 0; hops < 16; hops++ {
		e, ok := t.entries[name]
		if !ok {
			return tarEntry{}, fmt.Errorf("archive has no file %s", name)
		}
		switch e.typ {
		case tar.TypeReg, tar.TypeRegA:
			return e, nil
		case tar.TypeSymlink, tar.TypeLink:
			name = e.link
		default:
			return tarEntry{}, fmt.Errorf("archive entry %s is not a file", name)
		}
	}
	return tarEntry{}, fmt.Errorf("archive entry %s: too many links", name)
}

func (t *tarIndex) has(name string) bool {
	_, err := t.lookup(name)
	return err == nil
}

// open returns a reader of one file of the archive.
func (t *tarIndex) open(name string) (io.ReadCloser, int64, error) {
	e, err := t.lookup(name)
	if err != nil {
		return nil, 0, err
	}
	return io.NopCloser(io.NewSectionReader(t.f, e.offset, e.size)), e.size, nil
}

// readAll returns a small file (a manifest, a config) whole.
func (t *tarIndex) readAll(name string, limit int64) ([]byte, error) {
	r, size, err := t.open(name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if size > limit {
		return nil, fmt.Errorf("archive file %s is too large (%d bytes)", name, size)
	}
	return io.ReadAll(r)
}
