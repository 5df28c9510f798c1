package logs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriterSplitsLinesAndRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	w, err := NewWriter(path, 400, 3)
	if err != nil {
		t.Fatal(err)
	}
	out := &strings.Builder{}
	s := w.Stream("stdout", out)
	// Lines cut across writes are joined; a write may hold several lines.
	fmt.Fprint(s, "par")
	fmt.Fprint(s, "tial\nsecond\nthi")
	fmt.Fprint(s, "rd\n")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(s, "line %02d\n", i)
	}
	w.Close()
	if !strings.HasPrefix(out.String(), "partial\nsecond\nthird\n") {
		t.Errorf("passed through: %q", out.String())
	}
	for _, p := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(p)
		if err != nil || st.Size() > 400 {
			t.Errorf("%s: %v %v", p, st, err)
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("more files than max-file")
	}
	all, err := Read(path, ReadOptions{Tail: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 || all[len(all)-1].Log != "line 39\n" || all[0].Stream != "stdout" {
		t.Errorf("read after rotation: %d entries, last %+v", len(all), all[len(all)-1])
	}
	// Consecutive: nothing lost between the files that are kept.
	for i := 1; i < len(all); i++ {
		var a, b int
		if _, err := fmt.Sscanf(all[i-1].Log, "line %d", &a); err != nil {
			continue
		}
		fmt.Sscanf(all[i].Log, "line %d", &b)
		if b != a+1 {
			t.Errorf("gap between %q and %q", all[i-1].Log, all[i].Log)
		}
	}
	tail, _ := Read(path, ReadOptions{Tail: 2})
	if len(tail) != 2 || tail[1].Log != "line 39\n" {
		t.Errorf("tail 2: %+v", tail)
	}
}

func TestLongLinesAreCut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	w, _ := NewWriter(path, 0, 1)
	s := w.Stream("stderr", nil)
	fmt.Fprint(s, strings.Repeat("x", maxLine+10)+"\n")
	w.Close()
	all, _ := Read(path, ReadOptions{Tail: -1})
	if len(all) != 2 || len(all[0].Log) != maxLine || all[1].Log != "xxxxxxxxxx\n" || all[0].Stream != "stderr" {
		t.Errorf("long line: %d entries", len(all))
	}
}

func TestSinceUntil(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	w, _ := NewWriter(path, 0, 1)
	base := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 5; i++ {
		w.Write(Entry{Log: fmt.Sprintf("%d\n", i), Stream: "stdout", Time: base.Add(time.Duration(i) * time.Second)})
	}
	w.Close()
	got, _ := Read(path, ReadOptions{Since: base.Add(time.Second), Until: base.Add(3 * time.Second), Tail: -1})
	if len(got) != 2 || got[0].Log != "1\n" || got[1].Log != "2\n" {
		t.Errorf("since/until: %+v", got)
	}
}

func TestParseTimeAndLimits(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"1h":                             now.Add(-time.Hour),
		"1795822177":                     time.Unix(1795822177, 0),
		"1795822177.000000042":           time.Unix(1795822177, 42),
		"1795822177.5":                   time.Unix(1795822177, 500000000),
		"2026-11-27T10:00:00Z":           time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC),
		"2026-11-27T10:00:00.123456789Z": time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC),
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"soon", "1h30", "2026-13-01"} {
		if _, err := ParseTime(bad, now); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	if size, files, err := Limits(map[string]string{"max-size": "10m", "max-file": "3"}); err != nil || size != 10<<20 || files != 3 {
		t.Errorf("limits: %d %d %v", size, files, err)
	}
	for _, bad := range []map[string]string{{"max-size": "lots"}, {"max-file": "2"}, {"max-size": "1m", "max-file": "0"}} {
		if _, _, err := Limits(bad); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}
