// Package progress shows the progress of long operations (pull, push,
// load) as Docker does: one bar per item, redrawn in place on a terminal;
// one plain line per status change when the output is a pipe or a file.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
	"golang.org/x/term"
)

// Reporter prints the progress of a set of items.
type Reporter struct {
	w     io.Writer
	tty   bool
	width int

	mu     sync.Mutex
	items  []*Item
	drawn  int // lines drawn by the last redraw
	last   time.Time
	closed bool
}

// New makes a reporter writing to w; it draws bars when w is a terminal.
// A nil w discards everything (quiet mode).
func New(w io.Writer) *Reporter {
	r := &Reporter{w: w, width: 80}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		r.tty = true
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 20 {
			r.width = cols
		}
	}
	return r
}

// Terminal reports whether bars are drawn.
func (r *Reporter) Terminal() bool { return r != nil && r.tty }

// Item is one thing in progress (a layer, a blob).
type Item struct {
	r      *Reporter
	id     string
	status string
	total  int64
	n      int64
}

// Item adds an item with a short id and a size in bytes (0 if unknown).
func (r *Reporter) Item(id string, total int64) *Item {
	it := &Item{r: r, id: id, total: total}
	if r == nil || r.w == nil {
		return it
	}
	r.mu.Lock()
	r.items = append(r.items, it)
	r.mu.Unlock()
	return it
}

// Status sets the item's status; in a pipe it prints "id: status".
func (it *Item) Status(s string) {
	r := it.r
	if r == nil || r.w == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if it.status == s {
		return
	}
	it.status = s
	if r.tty {
		r.redrawLocked(true)
		return
	}
	fmt.Fprintf(r.w, "%s: %s\n", it.id, s)
}

// Add counts n more bytes done.
func (it *Item) Add(n int64) {
	r := it.r
	if r == nil || r.w == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	it.n += n
	if r.tty {
		r.redrawLocked(false)
	}
}

// Writer returns an io.Writer that counts what passes through it.
func (it *Item) Writer() io.Writer { return counter{it} }

type counter struct{ it *Item }

func (c counter) Write(p []byte) (int, error) { c.it.Add(int64(len(p))); return len(p), nil }

// Printf prints a line of its own (above the bars on a terminal).
func (r *Reporter) Printf(format string, args ...any) {
	if r == nil || r.w == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tty && r.drawn > 0 {
		// Lines printed now go below the bars, which stay as they are.
		r.redrawLocked(true)
		r.drawn = 0
		r.items = nil
	}
	fmt.Fprintf(r.w, format, args...)
}

// Close draws the final state.
func (r *Reporter) Close() {
	if r == nil || r.w == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tty && !r.closed {
		r.redrawLocked(true)
	}
	r.closed = true
}

func (r *Reporter) redrawLocked(force bool) {
	if !force && time.Since(r.last) < 100*time.Millisecond {
		return
	}
	r.last = time.Now()
	var b strings.Builder
	if r.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", r.drawn)
	}
	for _, it := range r.items {
		b.WriteString("\x1b[2K")
		b.WriteString(it.line(r.width))
		b.WriteByte('\n')
	}
	r.drawn = len(r.items)
	io.WriteString(r.w, b.String())
}

func (it *Item) line(width int) string {
	s := it.id + ": " + it.status
	if it.total <= 0 || it.n <= 0 || it.n >= it.total && strings.Contains(it.status, "complete") {
		return s
	}
	n := it.n
	if n > it.total {
		n = it.total
	}
	barWidth := 50
	if width < 100 {
		barWidth = 25
	}
	filled := int(float64(barWidth) * float64(n) / float64(it.total))
	bar := strings.Repeat("=", filled)
	if filled < barWidth {
		bar += ">" + strings.Repeat(" ", barWidth-filled-1)
	}
	s = fmt.Sprintf("%-40s [%s] %8s/%s", s, bar, units.HumanSizeWithPrecision(float64(n), 3), units.HumanSizeWithPrecision(float64(it.total), 3))
	if len(s) > width-1 {
		s = s[:width-1]
	}
	return s
}
