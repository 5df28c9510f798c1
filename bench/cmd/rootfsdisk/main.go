// Command rootfsdisk measures the disk that N containers of one image use:
// it makes N root filesystems of the image in a hull store, mounts them,
// writes a small file in each (as a container would), and reports the
// bytes on disk of the image's layers, of the containers' own layers and
// of the whole store, against N full copies. It removes what it made.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hullproject/hull/image"
)

func main() {
	root := flag.String("root", "", "hull store (--root)")
	ref := flag.String("image", "", "image name or ID")
	n := flag.Int("n", 10, "number of containers")
	flag.Parse()
	if err := run(*root, *ref, *n); err != nil {
		fmt.Fprintln(os.Stderr, "rootfsdisk:", err)
		os.Exit(1)
	}
}

func run(root, ref string, n int) error {
	s, err := image.Open(root, "")
	if err != nil {
		return err
	}
	img, err := s.Resolve(ref)
	if err != nil {
		return err
	}
	layers := image.DirSize(filepath.Join(s.Layers.Root(), "layers"))
	var ids []string
	defer func() {
		for _, id := range ids {
			s.Layers.RemoveRootfs(id)
		}
	}()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("rootfsdisk-%d-%d", os.Getpid(), i)
		if _, err := s.Layers.CreateRootfs(id, img.ID, img.TopLayer()); err != nil {
			return err
		}
		ids = append(ids, id)
		dir, err := s.Layers.Mount(id)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "container-"+fmt.Sprint(i)), []byte("hello\n"), 0o644); err != nil {
			return err
		}
	}
	var own int64
	for _, id := range ids {
		upper, err := s.Layers.UpperDir(id)
		if err != nil {
			return err
		}
		own += image.DirSize(upper)
	}
	after := image.DirSize(filepath.Join(s.Layers.Root(), "layers"))
	fmt.Printf("driver: %s\n", s.Layers.Driver())
	fmt.Printf("image layers on disk: %.1f MB (uncompressed image size %.1f MB)\n", mb(after), mb(img.Size))
	fmt.Printf("%d containers' own layers: %.2f MB (%.1f kB each)\n", n, mb(own), float64(own)/float64(n)/1e3)
	fmt.Printf("layers + %d containers: %.1f MB; %d full copies would be %.1f MB (%.2fx one copy)\n",
		n, mb(after+own), n, mb(int64(n)*layers), float64(after+own)/float64(layers))
	return nil
}

func mb(n int64) float64 { return float64(n) / 1e6 }
