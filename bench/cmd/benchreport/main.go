// Command benchreport prints the comparison table of bench/runtime.sh from
// hyperfine's --export-json file.
//
//	benchreport [-ref hull-runc] [-baseline NAME] [-wrapped rt1,rt2] [-ratio raw|net] FILE.json
//
// Benchmarks are named SCENARIO:RUNTIME (e.g. run:runc, lifecycle:crun);
// the one named by -baseline measures the unshare wrapper alone. The
// runtimes listed in -wrapped ran through that wrapper: their "net" median
// is their median minus the baseline's; for the others net is the median.
// Ratios compare medians (raw: as measured, net: wrapper taken off):
// t/t(REF) is how many times REF's time a runtime takes, t(REF)/t its
// inverse (how many times the runtime's time REF takes).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

type result struct {
	Command string    `json:"command"`
	Mean    float64   `json:"mean"`
	Stddev  float64   `json:"stddev"`
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Times   []float64 `json:"times"`
}

type row struct {
	runtime string
	r       result
	wrapped bool
	net     float64
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "benchreport: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	ref := flag.String("ref", "hull-runc", "runtime the ratios are relative to (the first runtime when it was not measured)")
	baseline := flag.String("baseline", "", "name of the wrapper-only benchmark")
	wrappedList := flag.String("wrapped", "", "comma-separated runtimes measured through the wrapper")
	ratio := flag.String("ratio", "raw", "medians the ratios use: raw (as measured) or net (wrapper cost taken off)")
	flag.Parse()
	if flag.NArg() != 1 || (*ratio != "raw" && *ratio != "net") {
		fmt.Fprintln(os.Stderr, "usage: benchreport [-ref RT] [-baseline NAME] [-wrapped RT,...] [-ratio raw|net] FILE.json")
		os.Exit(2)
	}
	data, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fail("%v", err)
	}
	var doc struct {
		Results []result `json:"results"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		fail("%s: %v", flag.Arg(0), err)
	}

	var base *result
	for i := range doc.Results {
		if doc.Results[i].Command == *baseline {
			base = &doc.Results[i]
		}
	}
	wrapped := map[string]bool{}
	for _, s := range strings.Split(*wrappedList, ",") {
		if s != "" {
			wrapped[s] = true
		}
	}
	if base == nil && (len(wrapped) > 0 || *ratio == "net") {
		fail("no baseline benchmark %q in the results", *baseline)
	}

	var scenarios, runtimes []string
	rows := map[string][]row{}
	for _, r := range doc.Results {
		if base != nil && r.Command == base.Command {
			continue
		}
		scenario, runtime, ok := strings.Cut(r.Command, ":")
		if !ok {
			scenario, runtime = "-", r.Command
		}
		rw := row{runtime: runtime, r: r, wrapped: wrapped[runtime], net: r.Median}
		if rw.wrapped {
			rw.net -= base.Median
		}
		if _, seen := rows[scenario]; !seen {
			scenarios = append(scenarios, scenario)
		}
		rows[scenario] = append(rows[scenario], rw)
		if !contains(runtimes, runtime) {
			runtimes = append(runtimes, runtime)
		}
	}
	if len(scenarios) == 0 {
		fail("no SCENARIO:RUNTIME benchmarks in %s", flag.Arg(0))
	}
	refName := *ref
	if !contains(runtimes, refName) {
		fmt.Printf("%s was not measured: ratios are relative to %s\n", refName, runtimes[0])
		refName = runtimes[0]
	}

	ms := func(s float64) string { return fmt.Sprintf("%.2f", s*1000) }
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "scenario\truntime\twrapped\tmedian ms\tnet ms\tmean ± sd ms\tmin ms\truns\tt/t(%s)\tt(%s)/t\n", refName, refName)
	for _, sc := range scenarios {
		rs := rows[sc]
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].runtime == refName && rs[j].runtime != refName })
		pick := func(rw row) float64 {
			if *ratio == "net" {
				return rw.net
			}
			return rw.r.Median
		}
		var refVal float64
		found := false
		for _, rw := range rs {
			if rw.runtime == refName {
				refVal, found = pick(rw), true
			}
		}
		for _, rw := range rs {
			w := "no"
			if rw.wrapped {
				w = "yes"
			}
			r1, r2 := "-", "-"
			if found && refVal > 0 && pick(rw) > 0 {
				r1 = fmt.Sprintf("%.2f", pick(rw)/refVal)
				r2 = fmt.Sprintf("%.2f", refVal/pick(rw))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s ± %s\t%s\t%d\t%s\t%s\n",
				sc, rw.runtime, w, ms(rw.r.Median), ms(rw.net), ms(rw.r.Mean), ms(rw.r.Stddev),
				ms(rw.r.Min), len(rw.r.Times), r1, r2)
		}
	}
	if base != nil {
		fmt.Fprintf(tw, "wrapper\t(alone)\t-\t%s\t-\t%s ± %s\t%s\t%d\t\t\n",
			ms(base.Median), ms(base.Mean), ms(base.Stddev), ms(base.Min), len(base.Times))
	}
	tw.Flush()
	fmt.Printf("ratios use %s medians; t/t(%[2]s) > 1: slower than %[2]s; t(%[2]s)/t > 1: %[2]s is slower than it\n",
		map[string]string{"raw": "measured", "net": "net (wrapper median subtracted where wrapped)"}[*ratio], refName)
	if base != nil {
		fmt.Printf("wrapper = %s\n", base.Command)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
