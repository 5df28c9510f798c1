// Package logs reads and writes container logs in Docker's json-file
// format: one JSON object per line of output,
// {"log":"text\n","stream":"stdout","time":"2026-11-27T23:00:00.123456789Z"},
// in FILE, with FILE.1 … FILE.N-1 holding older lines after rotation.
package logs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"
)

// Entry is one line of a log.
type Entry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// Limits reads the json-file options max-size (e.g. "10m") and max-file
// (default 1). A size of 0 means no rotation.
func Limits(opts map[string]string) (int64, int, error) {
	var size int64
	files := 1
	if v := opts["max-size"]; v != "" {
		n, err := units.RAMInBytes(v)
		if err != nil || n <= 0 {
			return 0, 0, fmt.Errorf("invalid max-size %q", v)
		}
		size = n
	}
	if v := opts["max-file"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, 0, fmt.Errorf("invalid max-file %q: must be a number of at least 1", v)
		}
		if size == 0 {
			return 0, 0, fmt.Errorf("max-file can only be set with max-size")
		}
		files = n
	}
	return size, files, nil
}

// Writer appends entries to a log file, rotating it at a size limit.
type Writer struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	size    int64
	maxSize int64
	maxFile int
}

// NewWriter opens (appending) the log at path.
func NewWriter(path string, maxSize int64, maxFile int) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if maxFile < 1 {
		maxFile = 1
	}
	return &Writer{path: path, f: f, size: st.Size(), maxSize: maxSize, maxFile: maxFile}, nil
}

// Write adds one entry.
func (w *Writer) Write(e Entry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.maxSize > 0 && w.size > 0 && w.size+int64(len(line)) > w.maxSize {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(line)
	w.size += int64(n)
	return err
}

func (w *Writer) rotate() error {
	w.f.Close()
	if w.maxFile > 1 {
		for i := w.maxFile - 1; i > 1; i-- {
			os.Rename(fmt.Sprintf("%s.%d", w.path, i-1), fmt.Sprintf("%s.%d", w.path, i))
		}
		os.Rename(w.path, w.path+".1")
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_TRUNC|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("rotate log: %w", err)
	}
	w.f, w.size = f, 0
	return nil
}

// Close closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Close()
}

// Stream returns a writer that passes everything to out and logs it, one
// entry per line, under the stream's name.
func (w *Writer) Stream(name string, out io.Writer) io.Writer {
	return &streamWriter{w: w, name: name, out: out}
}

type streamWriter struct {
	w       *Writer
	name    string
	out     io.Writer
	partial []byte
}

// maxLine is where Docker cuts a line that has no end yet.
const maxLine = 16 << 10

func (s *streamWriter) Write(p []byte) (int, error) {
	if s.out != nil {
		s.out.Write(p)
	}
	now := time.Now().UTC()
	data := p
	for len(data) > 0 {
		seg, complete := data, false
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			seg, complete = data[:i+1], true
		}
		data = data[len(seg):]
		s.partial = append(s.partial, seg...)
		// A line longer than Docker's limit goes out in pieces.
		for len(s.partial) > maxLine || (!complete && len(s.partial) == maxLine) {
			s.w.Write(Entry{Log: string(s.partial[:maxLine]), Stream: s.name, Time: now})
			s.partial = append(s.partial[:0], s.partial[maxLine:]...)
		}
		if complete {
			s.w.Write(Entry{Log: string(s.partial), Stream: s.name, Time: now})
			s.partial = s.partial[:0]
		}
	}
	return len(p), nil
}

// ReadOptions select what Read returns.
type ReadOptions struct {
	Since, Until time.Time // zero: no bound
	// Tail keeps only the last N lines (-1: all).
	Tail int
}

// Read returns the log's entries, oldest first, from the rotated files and
// the current one.
func Read(path string, o ReadOptions) ([]Entry, error) {
	var files []string
	for i := 64; i >= 1; i-- {
		p := fmt.Sprintf("%s.%d", path, i)
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
		}
	}
	files = append(files, path)
	var out []Entry
	for _, p := range files {
		f, err := os.Open(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		entries, err := decode(f, o)
		f.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, entries...)
	}
	if o.Tail >= 0 && len(out) > o.Tail {
		out = out[len(out)-o.Tail:]
	}
	return out, nil
}

func decode(r io.Reader, o ReadOptions) ([]Entry, error) {
	var out []Entry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue // a line cut by a crash
		}
		if keep(e, o) {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

func keep(e Entry, o ReadOptions) bool {
	if !o.Since.IsZero() && e.Time.Before(o.Since) {
		return false
	}
	if !o.Until.IsZero() && !e.Time.Before(o.Until) {
		return false
	}
	return true
}

// Follow sends entries appended to the log after offset until stop is
// closed, following rotation. It polls: the writer may be another process.
func Follow(path string, from int64, o ReadOptions, out chan<- Entry, stop <-chan struct{}) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return err
	}
	rd := bufio.NewReader(f)
	var pending []byte
	for {
		line, err := rd.ReadBytes('\n')
		pending = append(pending, line...)
		if err == nil {
			var e Entry
			if json.Unmarshal(pending, &e) == nil && keep(e, o) {
				select {
				case out <- e:
				case <-stop:
					return nil
				}
			}
			pending = pending[:0]
			continue
		}
		if err != io.EOF {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-time.After(100 * time.Millisecond):
		}
		// Rotated: the name now points at a new, smaller file.
		if st, err := os.Stat(path); err == nil {
			cur, _ := f.Stat()
			if cur != nil && !os.SameFile(st, cur) {
				nf, err := os.Open(path)
				if err == nil {
					f.Close()
					f = nf
					rd = bufio.NewReader(f)
					pending = pending[:0]
				}
			}
		}
	}
}

// Size returns the current size of the log file (the offset Follow starts
// after a Read).
func Size(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// ParseTime reads --since/--until: a duration before now ("1h", "90s"), a
// Unix timestamp ("1700000000" or "1700000000.5") or an RFC 3339 time.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	// Seconds and nanoseconds are read apart: a float64 cannot hold a
	// nanosecond-exact time of today.
	if secS, fracS, _ := strings.Cut(s, "."); secS != "" && strings.Trim(secS, "0123456789") == "" && strings.Trim(fracS, "0123456789") == "" && len(fracS) <= 9 {
		sec, err := strconv.ParseInt(secS, 10, 64)
		if err == nil {
			ns, _ := strconv.ParseInt((fracS + "000000000")[:9], 10, 64)
			return time.Unix(sec, ns), nil
		}
	}
	for _, layout := range []string{time.RFC3339Nano, time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid time %q: use a duration (1h), a Unix timestamp or RFC 3339", s)
}
