package main

import (
	"fmt"
	"os"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/hullproject/hull/engine"
)

func newStatsCmd() *cobra.Command {
	var all, noStream, noTrunc bool
	var format string
	cmd := &cobra.Command{
		Use:   "stats [OPTIONS] [CONTAINER...]",
		Short: "Display a live stream of container(s) resource usage statistics",
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openEngine()
			if err != nil {
				return err
			}
			pick := func() ([]*engine.Container, error) {
				if len(args) > 0 {
					var out []*engine.Container
					for _, a := range args {
						c, err := e.Resolve(a)
						if err != nil {
							return nil, err
						}
						out = append(out, c)
					}
					return out, nil
				}
				list, err := e.List()
				if err != nil {
					return nil, err
				}
				var out []*engine.Container
				for _, c := range list {
					if all || e.State(c).Running {
						out = append(out, c)
					}
				}
				return out, nil
			}
			live := !noStream && isTerminal(os.Stdout)
			prev := map[string]*engine.Sample{}
			for round := 0; ; round++ {
				list, err := pick()
				if err != nil {
					return err
				}
				t := &table{format: format, headers: map[string]string{
					"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
					"MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
				}}
				for _, c := range list {
					id := c.ID
					if !noTrunc {
						id = id[:12]
					}
					row := map[string]any{"Container": id, "ID": id, "Name": c.Name, "CPUPerc": "--", "MemUsage": "-- / --",
						"MemPerc": "--", "NetIO": "--", "BlockIO": "--", "PIDs": "--"}
					if s, err := e.Sample(c); err == nil {
						st := engine.Compute(prev[c.ID], s)
						prev[c.ID] = s
						row["CPUPerc"] = fmt.Sprintf("%.2f%%", st.CPUPercent)
						row["MemUsage"] = units.BytesSize(float64(st.MemUsage)) + " / " + units.BytesSize(float64(st.MemLimit))
						row["MemPerc"] = fmt.Sprintf("%.2f%%", st.MemPercent)
						row["NetIO"] = humanSize(int64(st.NetRx)) + " / " + humanSize(int64(st.NetTx))
						row["BlockIO"] = humanSize(int64(st.BlockRead)) + " / " + humanSize(int64(st.BlockWrite))
						row["PIDs"] = fmt.Sprint(st.Pids)
					} else {
						row["CPUPerc"], row["MemPerc"], row["PIDs"] = "0.00%", "0.00%", "0"
						row["MemUsage"], row["NetIO"], row["BlockIO"] = "0B / 0B", "0B / 0B", "0B / 0B"
					}
					t.add(row)
				}
				// The first reading has no CPU figure yet: Docker's
				// --no-stream waits for a second one too.
				if round == 0 {
					time.Sleep(time.Second)
					continue
				}
				if live {
					fmt.Fprint(cmd.OutOrStdout(), "\x1b[2J\x1b[H")
				}
				if err := t.print(cmd.OutOrStdout(), "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"); err != nil {
					return err
				}
				if noStream || (!live && round >= 1 && noStream) {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(time.Second):
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "show all containers (default shows just running)")
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "disable streaming stats and only pull the first result")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not truncate output")
	cmd.Flags().StringVar(&format, "format", "", "format output with a Go template, 'table …' or 'json'")
	return cmd
}
