package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/hullproject/hull/image"
	"github.com/hullproject/hull/internal/progress"
)

// remoteFlags are the flags every command that talks to a registry takes.
type remoteFlags struct {
	tlsVerify bool
	authfile  string
}

func (r *remoteFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&r.tlsVerify, "tls-verify", true, "require HTTPS and verify certificates (false: plain HTTP allowed)")
	cmd.Flags().StringVar(&r.authfile, "authfile", os.Getenv("REGISTRY_AUTH_FILE"), "credentials file (default: Docker's config.json)")
}

func (r *remoteFlags) options() image.RemoteOptions {
	return image.RemoteOptions{Insecure: !r.tlsVerify, AuthFile: r.authfile}
}

func newPullCmd() *cobra.Command {
	var rf remoteFlags
	var quiet, allTags bool
	var platform string
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Download an image from a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if allTags {
				return errors.New("--all-tags is not supported")
			}
			ref, err := image.ParseReference(args[0])
			if err != nil {
				return err
			}
			s, err := openStore()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !quiet {
				if !strings.Contains(lastPathPart(args[0]), ":") && !strings.Contains(args[0], "@") {
					fmt.Fprintln(out, "Using default tag: latest")
				}
				what := ref.Tag
				if ref.Digest != "" {
					what = ref.Digest
				}
				fmt.Fprintf(out, "%s: Pulling from %s\n", what, strings.TrimPrefix(ref.Repository, ref.Registry+"/"))
			}
			prog := progress.New(progressOut(cmd, quiet))
			opts := rf.options()
			opts.Platform = platform
			res, err := s.Pull(cmd.Context(), args[0], opts, prog)
			prog.Close()
			if err != nil {
				return err
			}
			if !quiet {
				fmt.Fprintln(out, "Digest:", res.Digest)
				if res.UpToDate {
					fmt.Fprintln(out, "Status: Image is up to date for", ref.Familiar())
				} else {
					fmt.Fprintln(out, "Status: Downloaded newer image for", ref.Familiar())
				}
			}
			fmt.Fprintln(out, ref.String())
			return nil
		},
	}
	rf.add(cmd)
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "suppress verbose output")
	cmd.Flags().BoolVarP(&allTags, "all-tags", "a", false, "download all tagged images in the repository")
	cmd.Flags().StringVar(&platform, "platform", os.Getenv("DOCKER_DEFAULT_PLATFORM"), "set platform if server is multi-platform capable (os/arch[/variant])")
	return cmd
}

// lastPathPart is what follows the last "/", where a tag's ":" would be
// (a registry's port has a ":" too).
func lastPathPart(s string) string {
	if i := strings.LastIndex(s, "/"); i >= 0 {
		return s[i+1:]
	}
	return s
}

func newPushCmd() *cobra.Command {
	var rf remoteFlags
	var quiet bool
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG]",
		Short: "Upload an image to a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := image.ParseReference(args[0])
			if err != nil {
				return err
			}
			s, err := openStore()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !quiet {
				fmt.Fprintf(out, "The push refers to repository [%s]\n", ref.FamiliarRepository())
			}
			prog := progress.New(progressOut(cmd, quiet))
			d, err := s.Push(cmd.Context(), args[0], rf.options(), prog)
			prog.Close()
			if err != nil {
				return err
			}
			img, _ := s.Resolve(args[0])
			if quiet {
				fmt.Fprintln(out, ref.Familiar())
			} else if img != nil {
				fmt.Fprintf(out, "%s: digest: %s size: %d\n", ref.Tag, d, img.ManifestSize)
			}
			return nil
		},
	}
	rf.add(cmd)
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "suppress verbose output")
	return cmd
}

func newLoginCmd() *cobra.Command {
	var rf remoteFlags
	var user, password string
	var passwordStdin bool
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Log in to a registry",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := "docker.io"
			if len(args) == 1 {
				server = args[0]
			}
			if password != "" && passwordStdin {
				return errors.New("--password and --password-stdin are mutually exclusive")
			}
			in := bufio.NewReader(cmd.InOrStdin())
			if passwordStdin {
				if user == "" {
					return errors.New("must provide --username with --password-stdin")
				}
				raw, err := io.ReadAll(in)
				if err != nil {
					return err
				}
				password = strings.TrimRight(string(raw), "\r\n")
			}
			if user == "" {
				fmt.Fprint(cmd.OutOrStdout(), "Username: ")
				line, _ := in.ReadString('\n')
				user = strings.TrimSpace(line)
			}
			if password == "" {
				fmt.Fprint(cmd.OutOrStdout(), "Password: ")
				if f, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					raw, err := term.ReadPassword(int(f.Fd()))
					fmt.Fprintln(cmd.OutOrStdout())
					if err != nil {
						return err
					}
					password = string(raw)
				} else {
					line, _ := in.ReadString('\n')
					password = strings.TrimRight(line, "\r\n")
				}
			}
			if err := image.Login(cmd.Context(), server, user, password, rf.options()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Login Succeeded")
			return nil
		},
	}
	rf.add(cmd)
	cmd.Flags().StringVarP(&user, "username", "u", "", "username")
	cmd.Flags().StringVarP(&password, "password", "p", "", "password")
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "take the password from stdin")
	return cmd
}

func newLogoutCmd() *cobra.Command {
	var rf remoteFlags
	cmd := &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Log out from a registry",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := "docker.io"
			if len(args) == 1 {
				server = args[0]
			}
			had, err := image.Logout(server, rf.options())
			if err != nil {
				return err
			}
			if !had {
				fmt.Fprintf(cmd.OutOrStdout(), "Not logged in to %s\n", server)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removing login credentials for %s\n", server)
			return nil
		},
	}
	cmd.Flags().StringVar(&rf.authfile, "authfile", os.Getenv("REGISTRY_AUTH_FILE"), "credentials file (default: Docker's config.json)")
	return cmd
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
