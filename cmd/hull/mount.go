package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/hullproject/hull/image"
)

func newImageMountCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "mount [IMAGE...]",
		Short: "Mount images' root filesystems read-only and print where (no IMAGE: list mounted images)",
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			if len(args) == 0 {
				list, err := s.MountedImages()
				if err != nil {
					return err
				}
				t := &table{format: format, headers: map[string]string{"ID": "IMAGE ID", "Repositories": "REPOSITORIES", "MountPoint": "MOUNTPOINT"}}
				for _, m := range list {
					names := ""
					for i, n := range m.Names {
						if i > 0 {
							names += ","
						}
						names += image.Familiar(n)
					}
					t.add(map[string]any{"ID": m.ID.Encoded()[:12], "Repositories": names, "MountPoint": m.Path})
				}
				return t.print(cmd.OutOrStdout(), "{{.ID}} {{.Repositories}} {{.MountPoint}}")
			}
			var errs []error
			for _, ref := range args {
				p, err := s.MountImage(ref)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), p)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "format the list with a Go template or 'json'")
	return cmd
}

func newImageUnmountCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "unmount IMAGE [IMAGE...]",
		Aliases: []string{"umount"},
		Short:   "Unmount images mounted with image mount",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			var errs []error
			for _, ref := range args {
				if err := s.UnmountImage(ref); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), ref)
			}
			return errors.Join(errs...)
		},
	}
}
