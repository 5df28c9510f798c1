package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hullproject/hull/engine"
	"github.com/hullproject/hull/network"
)

func newNetworkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Manage networks",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	var co network.CreateOptions
	var labels []string
	var driver string
	create := &cobra.Command{
		Use:   "create [OPTIONS] NETWORK",
		Short: "Create a network",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if driver != "bridge" {
				return fmt.Errorf("driver %q is not supported (bridge only)", driver)
			}
			e, err := openEngine()
			if err != nil {
				return err
			}
			co.Name = args[0]
			co.Labels = map[string]string{}
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				co.Labels[k] = v
			}
			n, err := e.Networks().Create(co)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), n.ID)
			return nil
		},
	}
	create.Flags().StringVar(&co.Subnet, "subnet", "", "subnet in CIDR format")
	create.Flags().StringVar(&co.Gateway, "gateway", "", "IPv4 gateway for the subnet")
	create.Flags().BoolVar(&co.Internal, "internal", false, "restrict external access to the network")
	create.Flags().StringArrayVar(&labels, "label", nil, "set metadata on a network")
	create.Flags().StringVarP(&driver, "driver", "d", "bridge", "driver to manage the network")

	var lsQuiet, lsNoTrunc bool
	var lsFormat string
	ls := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			nets, err := e.Networks().List()
			if err != nil {
				return err
			}
			t := &table{format: lsFormat, headers: map[string]string{"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Internal": "INTERNAL"}}
			for _, n := range nets {
				id := n.ID
				if !lsNoTrunc {
					id = id[:12]
				}
				if lsQuiet {
					fmt.Fprintln(cmd.OutOrStdout(), id)
					continue
				}
				t.add(map[string]any{"ID": id, "Name": n.Name, "Driver": n.Driver, "Scope": "local", "Internal": fmt.Sprint(n.Internal)})
			}
			if lsQuiet {
				return nil
			}
			return t.print(cmd.OutOrStdout(), "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}")
		},
	}
	ls.Flags().BoolVarP(&lsQuiet, "quiet", "q", false, "only display network IDs")
	ls.Flags().BoolVar(&lsNoTrunc, "no-trunc", false, "do not truncate the output")
	ls.Flags().StringVar(&lsFormat, "format", "", "format output with a Go template, 'table …' or 'json'")

	var inspFormat string
	inspect := &cobra.Command{
		Use:   "inspect [OPTIONS] NETWORK [NETWORK...]",
		Short: "Display detailed information on one or more networks",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			return inspectEach(cmd, args, inspFormat, func(a string) (any, error) {
				n, err := e.Networks().Get(a)
				if err != nil {
					return nil, err
				}
				return networkInspect(e, n), nil
			})
		},
	}
	inspect.Flags().StringVarP(&inspFormat, "format", "f", "", "format output with a Go template or 'json'")

	rm := &cobra.Command{
		Use:     "rm NETWORK [NETWORK...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more networks",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return eachArg(cmd, args, func(e *engine.Engine, a string) error { return e.RemoveNetwork(a) })
		},
	}
	var pruneForce bool
	prune := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all unused networks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !pruneForce && !confirm(cmd, "WARNING! This will remove all custom networks not used by at least one container.") {
				return nil
			}
			e, err := openEngine()
			if err != nil {
				return err
			}
			nets, err := e.Networks().List()
			if err != nil {
				return err
			}
			var removed []string
			for _, n := range nets {
				if n.Default() {
					continue
				}
				if err := e.RemoveNetwork(n.Name); err == nil {
					removed = append(removed, n.Name)
				}
			}
			printDeleted(cmd.OutOrStdout(), "Deleted Networks:", removed)
			return nil
		},
	}
	prune.Flags().BoolVarP(&pruneForce, "force", "f", false, "do not prompt for confirmation")

	var aliases []string
	connect := &cobra.Command{
		Use:   "connect [OPTIONS] NETWORK CONTAINER",
		Short: "Connect a container to a network",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			return e.ConnectNetwork(args[0], args[1], aliases)
		},
	}
	connect.Flags().StringArrayVar(&aliases, "alias", nil, "add network-scoped alias for the container")
	var force bool
	disconnect := &cobra.Command{
		Use:   "disconnect [OPTIONS] NETWORK CONTAINER",
		Short: "Disconnect a container from a network",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			return e.DisconnectNetwork(args[0], args[1])
		},
	}
	disconnect.Flags().BoolVarP(&force, "force", "f", false, "force the container to disconnect from a network")
	dnsServe := &cobra.Command{
		Use:    "dns-serve NETWORK",
		Short:  "Run the DNS responder of a user network (started by hull as needed)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			var ready *os.File
			if f := os.NewFile(3, "ready"); f != nil {
				if _, err := f.Stat(); err == nil {
					ready = f
				}
			}
			return e.Networks().ServeDNS(ctx, args[0], ready)
		},
	}
	cmd.AddCommand(create, ls, inspect, rm, prune, connect, disconnect, dnsServe)
	return cmd
}

// networkInspect is a network as `docker network inspect` shows it.
func networkInspect(e *engine.Engine, n *network.Network) map[string]any {
	containers := map[string]any{}
	if list, err := e.List(); err == nil {
		for _, c := range list {
			if ep, ok := c.Net.Networks[n.Name]; ok && e.State(c).Running {
				containers[c.ID] = map[string]any{"Name": c.Name, "EndpointID": ep.EndpointID, "MacAddress": ep.MacAddress,
					"IPv4Address": fmt.Sprintf("%s/%d", ep.IPAddress, ep.IPPrefixLen), "IPv6Address": ""}
			}
		}
	}
	return map[string]any{
		"Name": n.Name, "Id": n.ID, "Created": n.Created, "Scope": "local", "Driver": n.Driver, "EnableIPv6": false,
		"IPAM":     map[string]any{"Driver": "default", "Options": map[string]string{}, "Config": []map[string]string{{"Subnet": n.Subnet, "Gateway": n.Gateway}}},
		"Internal": n.Internal, "Attachable": false, "Ingress": false, "ConfigOnly": false,
		"Containers": containers, "Options": map[string]string{"com.docker.network.bridge.name": n.Bridge}, "Labels": n.Labels,
	}
}
