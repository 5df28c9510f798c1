package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/docker/go-units"
)

// templateFuncs are the functions Docker's --format templates offer.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":  strings.Join,
	"split": strings.Split,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
	"truncate": func(s string, n int) string {
		if len(s) > n {
			return s[:n]
		}
		return s
	},
	"pad": func(s string, l, r int) string {
		return strings.Repeat(" ", l) + s + strings.Repeat(" ", r)
	},
	"println": fmt.Sprintln,
}

// table prints rows as Docker does: a table with the default layout, or
// each row through a --format template ("table …" keeps the header,
// "json" prints each row as JSON).
type table struct {
	format  string
	headers map[string]string
	rows    []map[string]any
}

func (t *table) add(row map[string]any) { t.rows = append(t.rows, row) }

func (t *table) print(w io.Writer, defaultFormat string) error {
	format := t.format
	if format == "" {
		format = defaultFormat
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for _, r := range t.rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	isTable := strings.HasPrefix(format, "table")
	if isTable {
		format = strings.TrimSpace(strings.TrimPrefix(format, "table"))
	}
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	tmpl, err := template.New("format").Funcs(templateFuncs).Parse(format)
	if err != nil {
		return fmt.Errorf("template parsing error: %w", err)
	}
	out := w
	var tw *tabwriter.Writer
	if isTable {
		tw = tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
		out = tw
		hdr := map[string]any{}
		for k, v := range t.headers {
			hdr[k] = v
		}
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, hdr); err == nil {
			buf.WriteByte('\n')
			out.Write(buf.Bytes())
		}
	}
	for _, r := range t.rows {
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, r); err != nil {
			return fmt.Errorf("template: %w", err)
		}
		buf.WriteByte('\n')
		if _, err := out.Write(buf.Bytes()); err != nil {
			return err
		}
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

// printTemplate prints one value through a --format template.
func printTemplate(w io.Writer, format string, v any) error {
	if format == "json" {
		format = "{{json .}}"
	}
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	tmpl, err := template.New("format").Funcs(templateFuncs).Parse(format)
	if err != nil {
		return fmt.Errorf("template parsing error: %w", err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, v); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

// humanSize is Docker's size display (decimal units, 3 significant digits).
func humanSize(n int64) string { return units.HumanSizeWithPrecision(float64(n), 3) }

// since is Docker's "CREATED" column: "3 weeks ago".
func since(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return units.HumanDuration(time.Since(t)) + " ago"
}

// toJSONValue turns a struct into the generic form templates and JSON
// output share, so `{{.Config.Cmd}}` works on inspect output.
func toJSONValue(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return out, dec.Decode(&out)
}
