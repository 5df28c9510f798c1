package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/hullproject/hull/image"
	"github.com/hullproject/hull/internal/progress"
)

func newImagesCmd() *cobra.Command {
	var o struct {
		all, quiet, digests, noTrunc bool
		format                       string
		filters                      []string
	}
	cmd := &cobra.Command{
		Use:   "images [OPTIONS] [REPOSITORY[:TAG]]",
		Short: "List images",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			list, err := s.List()
			if err != nil {
				return err
			}
			filters, err := parseImageFilters(o.filters, s)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				filters = append(filters, referenceFilter(args[0]))
			}
			t := &table{format: o.format, headers: map[string]string{
				"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
				"CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
				"Containers": "CONTAINERS", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
				"VirtualSize": "VIRTUAL SIZE",
			}}
			for _, img := range list {
				for _, row := range imageRows(img, o.noTrunc, o.digests) {
					if !matchAll(filters, img, row) {
						continue
					}
					t.add(row)
				}
			}
			def := "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
			if o.digests {
				def = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
			}
			if o.quiet {
				seen := map[string]bool{}
				for _, r := range t.rows {
					id := r["ID"].(string)
					if !seen[id] {
						seen[id] = true
						fmt.Fprintln(cmd.OutOrStdout(), id)
					}
				}
				return nil
			}
			return t.print(cmd.OutOrStdout(), def)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all", "a", false, "show all images (intermediate images too)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only show image IDs")
	f.BoolVar(&o.digests, "digests", false, "show digests")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "don't truncate output")
	f.StringVar(&o.format, "format", "", "format output with a Go template, 'table …' or 'json'")
	f.StringArrayVarP(&o.filters, "filter", "f", nil, "filter output (dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE)")
	return cmd
}

// imageRows makes one row per name of an image (one "<none>" row for an
// image without names), as `docker images` does.
func imageRows(img image.Summary, noTrunc, digests bool) []map[string]any {
	id := img.ID.String()
	if !noTrunc {
		id = img.ID.Encoded()[:12]
	}
	base := func() map[string]any {
		return map[string]any{
			"ID": id, "Repository": "<none>", "Tag": "<none>", "Digest": "<none>",
			"CreatedSince": since(img.Created), "CreatedAt": img.Created.Local().Format("2006-01-02 15:04:05 -0700 MST"),
			"Size": humanSize(img.Size), "VirtualSize": humanSize(img.Size),
			"SharedSize": "N/A", "UniqueSize": "N/A", "Containers": fmt.Sprint(img.Containers),
			"dangling": len(img.Names) == 0,
		}
	}
	digestFor := func(repo string) string {
		for _, rd := range img.RepoDigests {
			if r, err := image.ParseReference(rd); err == nil && r.Repository == repo {
				return r.Digest
			}
		}
		return "<none>"
	}
	if len(img.Names) == 0 {
		row := base()
		if len(img.RepoDigests) > 0 {
			if r, err := image.ParseReference(img.RepoDigests[0]); err == nil {
				row["Repository"] = r.FamiliarRepository()
				row["Digest"] = r.Digest
			}
		}
		return []map[string]any{row}
	}
	var rows []map[string]any
	for _, n := range img.Names {
		r, err := image.ParseReference(n)
		if err != nil {
			continue
		}
		row := base()
		row["Repository"] = r.FamiliarRepository()
		row["Tag"] = r.Tag
		row["Digest"] = digestFor(r.Repository)
		row["name"] = r
		rows = append(rows, row)
	}
	return rows
}

type imageFilter func(img image.Summary, row map[string]any) bool

func matchAll(fs []imageFilter, img image.Summary, row map[string]any) bool {
	for _, f := range fs {
		if !f(img, row) {
			return false
		}
	}
	return true
}

func referenceFilter(pattern string) imageFilter {
	return func(_ image.Summary, row map[string]any) bool {
		r, ok := row["name"].(image.Reference)
		if !ok {
			return false
		}
		for _, candidate := range []string{r.Familiar(), r.FamiliarRepository(), r.String(), r.Repository} {
			if m, _ := path.Match(pattern, candidate); m {
				return true
			}
		}
		return false
	}
}

func parseImageFilters(specs []string, s *image.Store) ([]imageFilter, error) {
	var out []imageFilter
	for _, spec := range specs {
		k, v, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, fmt.Errorf("bad format of filter (expected name=value): %q", spec)
		}
		switch k {
		case "dangling":
			want := v == "true" || v == "1"
			if !want && v != "false" && v != "0" {
				return nil, fmt.Errorf("invalid filter 'dangling=%s'", v)
			}
			out = append(out, func(img image.Summary, _ map[string]any) bool { return (len(img.Names) == 0) == want })
		case "reference":
			if _, err := path.Match(v, ""); err != nil {
				return nil, fmt.Errorf("invalid reference filter %q: %w", v, err)
			}
			out = append(out, referenceFilter(v))
		case "label":
			lk, lv, hasValue := strings.Cut(v, "=")
			out = append(out, func(img image.Summary, _ map[string]any) bool {
				cfg, err := s.Config(img.Image)
				if err != nil {
					return false
				}
				got, ok := cfg.Config.Labels[lk]
				return ok && (!hasValue || got == lv)
			})
		case "before", "since":
			ref, err := s.Resolve(v)
			if err != nil {
				return nil, err
			}
			t, before := ref.Created, k == "before"
			out = append(out, func(img image.Summary, _ map[string]any) bool {
				if before {
					return img.Created.Before(t)
				}
				return img.Created.After(t)
			})
		default:
			return nil, fmt.Errorf("invalid filter %q", k)
		}
	}
	return out, nil
}

func newTagCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			return s.Tag(args[0], args[1])
		},
	}
}

func newRmiCmd() *cobra.Command {
	var force, noPrune bool
	cmd := &cobra.Command{
		Use:   "rmi [OPTIONS] IMAGE [IMAGE...]",
		Short: "Remove one or more images",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			var errs []error
			for _, ref := range args {
				reports, err := s.Remove(ref, force)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				for _, r := range reports {
					if r.Untagged != "" {
						fmt.Fprintln(cmd.OutOrStdout(), "Untagged:", r.Untagged)
					} else {
						fmt.Fprintln(cmd.OutOrStdout(), "Deleted:", r.Deleted)
					}
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "force removal of the image")
	cmd.Flags().BoolVar(&noPrune, "no-prune", false, "do not delete untagged parents")
	return cmd
}

func newImportCmd() *cobra.Command {
	var changes []string
	var message, platform string
	cmd := &cobra.Command{
		Use:   "import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
		Short: "Import the contents from a tarball to create a filesystem image",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if platform != "" && platform != "linux/amd64" && platform != "linux" {
				return fmt.Errorf("--platform %s: only this machine's platform is supported", platform)
			}
			opts := image.NewImage{CreatedBy: "", Comment: message}
			opts.Config.Env = []string{image.DefaultPath}
			for _, c := range changes {
				if err := image.ApplyChange(&opts.Config, c); err != nil {
					return fmt.Errorf("--change %q: %w", c, err)
				}
			}
			if len(args) == 2 {
				opts.Names = []string{args[1]}
				if _, err := image.ParseReference(args[1]); err != nil {
					return err
				}
			}
			var in io.Reader = cmd.InOrStdin()
			switch {
			case args[0] == "-":
				opts.CreatedBy = "hull import -"
			case strings.HasPrefix(args[0], "http://") || strings.HasPrefix(args[0], "https://"):
				// As docker import URL: the body is the tarball.
				body, err := fetchTarball(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				defer body.Close()
				in = body
				opts.CreatedBy = "hull import " + args[0]
			default:
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("import: %w", err)
				}
				defer f.Close()
				in = f
				opts.CreatedBy = "hull import " + args[0]
			}
			s, err := openStore()
			if err != nil {
				return err
			}
			img, err := s.Import(in, opts, nil)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), img.ID)
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&changes, "change", "c", nil, "apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR, HEALTHCHECK)")
	cmd.Flags().StringVarP(&message, "message", "m", "", "commit message for the imported image")
	cmd.Flags().StringVar(&platform, "platform", "", "platform of the image (this machine's only)")
	return cmd
}

func newLoadCmd() *cobra.Command {
	var input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [OPTIONS]",
		Short: "Load an image from a tar archive (docker-archive, OCI archive) or OCI layout, or STDIN",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			src := input
			if src == "" {
				src = "-"
				if f, ok := cmd.InOrStdin().(*os.File); ok && isTerminal(f) {
					return errors.New("requested load from stdin, but stdin is empty")
				}
			}
			s, err := openStore()
			if err != nil {
				return err
			}
			prog := progress.New(progressOut(cmd, quiet))
			loaded, err := s.Load(src, cmd.InOrStdin(), prog)
			prog.Close()
			for _, l := range loaded {
				if len(l.Names) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "Loaded image ID:", l.Image.ID)
				}
				for _, n := range l.Names {
					fmt.Fprintln(cmd.OutOrStdout(), "Loaded image:", image.Familiar(n))
				}
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "read from tar archive file (or OCI layout directory) instead of STDIN")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "suppress the load output")
	return cmd
}

func newSaveCmd() *cobra.Command {
	var output, format string
	cmd := &cobra.Command{
		Use:   "save [OPTIONS] IMAGE [IMAGE...]",
		Short: "Save one or more images to a tar archive (streamed to STDOUT by default)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			// Resolve every name before anything is written.
			for _, a := range args {
				if _, err := s.Resolve(a); err != nil {
					return err
				}
			}
			if output == "" {
				if f, ok := cmd.OutOrStdout().(*os.File); ok && isTerminal(f) {
					return errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")
				}
				return s.Save(cmd.OutOrStdout(), args, format)
			}
			return writeAtomically(output, func(w io.Writer) error { return s.Save(w, args, format) })
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to a file instead of STDOUT")
	cmd.Flags().StringVar(&format, "format", image.FormatDockerArchive, "archive format: docker-archive or oci-archive")
	return cmd
}

// writeAtomically writes a file through a temporary one, so a failed save
// leaves no half-written archive under the name asked for.
func writeAtomically(name string, write func(io.Writer) error) error {
	dir, base := path.Split(name)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-")
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	ok = true
	return nil
}

func newHistoryCmd() *cobra.Command {
	var human, noTrunc, quiet bool
	var format string
	cmd := &cobra.Command{
		Use:   "history [OPTIONS] IMAGE",
		Short: "Show the history of an image",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			hist, err := s.History(args[0])
			if err != nil {
				return err
			}
			t := &table{format: format, headers: map[string]string{
				"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
				"CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT",
			}}
			for _, h := range hist {
				id := h.ID
				if !noTrunc && strings.HasPrefix(id, "sha256:") {
					id = digest.Digest(id).Encoded()[:12]
				}
				if quiet {
					fmt.Fprintln(cmd.OutOrStdout(), id)
					continue
				}
				createdBy := h.CreatedBy
				if !noTrunc && len(createdBy) > 45 {
					createdBy = createdBy[:44] + "…"
				}
				size := fmt.Sprint(h.Size)
				created := h.Created.Format(time.RFC3339)
				if human {
					size = humanSize(h.Size)
					created = since(h.Created)
				}
				t.add(map[string]any{
					"ID": id, "CreatedSince": created, "CreatedAt": h.Created.Format(time.RFC3339),
					"CreatedBy": createdBy, "Size": size, "Comment": h.Comment, "Tags": h.Tags,
				})
			}
			if quiet {
				return nil
			}
			return t.print(cmd.OutOrStdout(), "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}")
		},
	}
	cmd.Flags().BoolVarP(&human, "human", "H", true, "print sizes and dates in human readable format")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "don't truncate output")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	cmd.Flags().StringVar(&format, "format", "", "format output with a Go template, 'table …' or 'json'")
	return cmd
}

func newImageInspectCmd(use string, aliases ...string) *cobra.Command {
	var format, typ string
	cmd := &cobra.Command{
		Use:     use + " [OPTIONS] IMAGE [IMAGE...]",
		Aliases: aliases,
		Short:   "Display detailed information on one or more images",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if typ != "" && typ != "image" {
				return fmt.Errorf("--type %s: only images can be inspected so far", typ)
			}
			s, err := openStore()
			if err != nil {
				return err
			}
			return inspectEach(cmd, args, format, func(a string) (any, error) { return s.Inspect(a) })
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output with a Go template or 'json'")
	if use == "inspect" {
		cmd.Flags().StringVar(&typ, "type", "", "only inspect objects of this type (image)")
	}
	return cmd
}

func newInspectCmd() *cobra.Command {
	var format, typ string
	var size bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NAME|ID [NAME|ID...]",
		Short: "Return low-level information on containers or images",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if typ != "" && typ != "container" && typ != "image" {
				return fmt.Errorf("%q is not a valid value for --type", typ)
			}
			return inspectObjects(cmd, args, format, typ)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output with a Go template or 'json'")
	cmd.Flags().StringVar(&typ, "type", "", "return JSON for the specified type (container, image)")
	cmd.Flags().BoolVarP(&size, "size", "s", false, "display total file sizes if the type is container")
	return cmd
}

func newImagePruneCmd() *cobra.Command {
	var all, force bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(filters) > 0 {
				return fmt.Errorf("--filter is not supported by image prune yet")
			}
			warning := "WARNING! This will remove all dangling images."
			if all {
				warning = "WARNING! This will remove all images without at least one container associated to them."
			}
			return pruneImages(cmd, all, force, warning)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all unused images, not just dangling ones")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "provide filter values")
	return cmd
}

// pruneImages asks before pruning (unless forced), prunes and prints what
// went, as `docker image prune` and `docker system prune` do.
func pruneImages(cmd *cobra.Command, all, force bool, warning string) error {
	if !force && !confirm(cmd, warning) {
		return nil
	}
	s, err := openStore()
	if err != nil {
		return err
	}
	rep, err := s.Prune(all)
	if err != nil {
		return err
	}
	printPrune(cmd.OutOrStdout(), rep)
	return nil
}

func printPrune(w io.Writer, rep *image.PruneReport) {
	if len(rep.Untagged)+len(rep.Deleted) > 0 {
		fmt.Fprintln(w, "Deleted Images:")
		for _, u := range rep.Untagged {
			fmt.Fprintln(w, "untagged:", u)
		}
		for _, d := range rep.Deleted {
			fmt.Fprintln(w, "deleted:", d)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Total reclaimed space:", humanSize(rep.Reclaimed))
}

func newBootstrapCmd() *cobra.Command {
	var tags []string
	cmd := &cobra.Command{
		Use:   "bootstrap busybox",
		Short: "Make a base image from what the host has (busybox: from Debian's busybox-static)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			img, err := s.Bootstrap(args[0], tags)
			if err != nil {
				return err
			}
			names, _ := s.Names(img.ID)
			for _, n := range names {
				fmt.Fprintln(cmd.OutOrStdout(), "Bootstrapped image:", image.Familiar(n))
			}
			fmt.Fprintln(cmd.OutOrStdout(), img.ID)
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&tags, "tag", "t", nil, "name the image (default busybox:latest)")
	return cmd
}

func newImageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	ls := newImagesCmd()
	ls.Use, ls.Aliases = "ls [OPTIONS] [REPOSITORY[:TAG]]", []string{"list"}
	rm := newRmiCmd()
	rm.Use, rm.Aliases = "rm [OPTIONS] IMAGE [IMAGE...]", []string{"remove"}
	sub := []*cobra.Command{
		ls, rm, newBootstrapCmd(), newImagePruneCmd(), newImageInspectCmd("inspect"),
		newHistoryCmd(), newTagCmd(), newImportCmd(), newLoadCmd(), newSaveCmd(),
		newPullCmd(), newPushCmd(), newImageMountCmd(), newImageUnmountCmd(),
	}
	cmd.AddCommand(sub...)
	return cmd
}

// confirm asks a yes/no question on the terminal; no answer is no.
func confirm(cmd *cobra.Command, warning string) bool {
	fmt.Fprintln(cmd.OutOrStdout(), warning)
	fmt.Fprint(cmd.OutOrStdout(), "Are you sure you want to continue? [y/N] ")
	var answer string
	fmt.Fscanln(cmd.InOrStdin(), &answer)
	answer = strings.ToLower(strings.TrimSpace(answer))
	return answer == "y" || answer == "yes"
}

// fetchTarball starts the download of a tarball to import; a status other
// than 200 is an error naming the URL.
func fetchTarball(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("import %s: %s", url, resp.Status)
	}
	return resp.Body, nil
}
