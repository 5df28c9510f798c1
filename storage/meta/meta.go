// Package meta is hull's metadata database: images, their names, layers
// with reference counts, container root filesystems and leases, in one
// bbolt file, changed only inside transactions.
//
// The file is opened for each transaction and closed after it. bbolt locks
// the file for as long as it is open, so holding it open for a whole pull
// would stop every other hull process; opening per transaction keeps the
// critical sections short while bbolt's lock still serializes writers
// across processes.
package meta

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/hullproject/hull/internal/proc"
)

// ErrNotFound is returned for records the database does not hold.
var ErrNotFound = errors.New("not found")

var (
	bucketImages   = []byte("images")
	bucketNames    = []byte("names")
	bucketLayers   = []byte("layers")
	bucketRootfs   = []byte("rootfs")
	bucketLeases   = []byte("leases")
	bucketSettings = []byte("settings")
	allBuckets     = [][]byte{bucketImages, bucketNames, bucketLayers, bucketRootfs, bucketLeases, bucketSettings,
		[]byte(Containers), []byte(ContainerNames), []byte(Volumes), []byte(Networks)}
)

// Buckets that packages above storage keep their own records in, through
// Record, PutRecord, DeleteRecord and EachRecord.
const (
	Containers     = "containers"     // container ID → the engine's container record
	ContainerNames = "containerNames" // container name → container ID
	Volumes        = "volumes"        // volume name → the engine's volume record
	Networks       = "networks"       // network name → its record, with its address leases
)

// Image is an image the store holds. Its ID is the digest of its config, as
// in Docker, so the same image pulled, loaded or pushed keeps its ID.
type Image struct {
	ID                digest.Digest   `json:"id"`
	Manifest          digest.Digest   `json:"manifest"`
	ManifestMediaType string          `json:"manifestMediaType"`
	ManifestSize      int64           `json:"manifestSize"`
	ChainIDs          []digest.Digest `json:"chainIds"`
	Size              int64           `json:"size"`
	Created           time.Time       `json:"created"`
	Added             time.Time       `json:"added"`
	RepoDigests       []string        `json:"repoDigests,omitempty"`
}

// TopLayer is the chain ID of the image's last layer, or "" for an image
// without layers.
func (i *Image) TopLayer() digest.Digest {
	if len(i.ChainIDs) == 0 {
		return ""
	}
	return i.ChainIDs[len(i.ChainIDs)-1]
}

// Layer is one unpacked layer, keyed by its chain ID.
type Layer struct {
	ChainID digest.Digest `json:"chainId"`
	DiffID  digest.Digest `json:"diffId"`
	Parent  digest.Digest `json:"parent,omitempty"`
	// Size is the size of the uncompressed layer tar.
	Size int64 `json:"size"`
	// Refs counts the images and root filesystems whose chain ends at or
	// passes through this layer.
	Refs int `json:"refs"`
	// Dir is the layer's directory name under the layer store.
	Dir     string    `json:"dir"`
	Created time.Time `json:"created"`
}

// Rootfs is a container's writable root filesystem over an image.
type Rootfs struct {
	ID      string        `json:"id"`
	Image   digest.Digest `json:"image"`
	Top     digest.Digest `json:"top"`
	Driver  string        `json:"driver"`
	Created time.Time     `json:"created"`
	// ReadOnly marks a view of the image itself (hull image mount): no
	// upper layer, mounted read-only.
	ReadOnly bool `json:"readOnly,omitempty"`
}

// Lease protects blobs and layers of work in progress from garbage collection. A
// lease belongs to a process and ends with it.
type Lease struct {
	ID      string          `json:"id"`
	PID     int             `json:"pid"`
	Start   uint64          `json:"start"` // process start time, guards against pid reuse
	Created time.Time       `json:"created"`
	Blobs   []digest.Digest `json:"blobs,omitempty"`
	Layers  []digest.Digest `json:"layers,omitempty"`
}

// Alive reports whether the lease's process still runs.
func (l *Lease) Alive() bool {
	st, err := processStart(l.PID)
	return err == nil && st == l.Start
}

// DB is the metadata database file.
type DB struct {
	path string
}

// Open creates the database file and its buckets if needed.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	db := &DB{path: path}
	// Every command opens the store: only a new (or older) file needs the
	// write transaction that creates the buckets.
	complete := false
	if _, err := os.Stat(path); err == nil {
		db.View(func(tx *Tx) error {
			complete = true
			for _, name := range allBuckets {
				if tx.bucket(name) == nil {
					complete = false
				}
			}
			return nil
		})
	}
	if complete {
		return db, nil
	}
	err := db.Update(func(*Tx) error { return nil })
	return db, err
}

// Path is the database file.
func (db *DB) Path() string { return db.path }

// open takes hull's own lock on the database, then opens it. bbolt locks
// the file too, but it polls a non-blocking lock every 50 ms, which caps
// contended transactions at about twenty a second; a blocking flock on a
// side file is woken by the kernel the moment the holder lets go, so by
// the time bbolt tries, its lock is free. Readers share the lock.
func (db *DB) open(write bool) (*bolt.DB, func(), error) {
	lockFd, err := unix.Open(db.path+".lock", unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("lock metadata %s: %w", db.path, err)
	}
	how := unix.LOCK_SH
	if write {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(lockFd, how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(lockFd)
		return nil, nil, fmt.Errorf("lock metadata %s: %w", db.path, err)
	}
	b, err := bolt.Open(db.path, 0o600, &bolt.Options{Timeout: 2 * time.Minute, ReadOnly: !write})
	if err != nil {
		unix.Close(lockFd)
		return nil, nil, fmt.Errorf("open metadata %s: %w", db.path, err)
	}
	return b, func() {
		b.Close()
		unix.Close(lockFd) // releases the flock
	}, nil
}

// Update runs fn in a read-write transaction; it commits when fn returns nil.
func (db *DB) Update(fn func(*Tx) error) error {
	b, done, err := db.open(true)
	if err != nil {
		return err
	}
	defer done()
	return b.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return fn(&Tx{tx: tx})
	})
}

// View runs fn in a read-only transaction.
func (db *DB) View(fn func(*Tx) error) error {
	b, done, err := db.open(false)
	if err != nil {
		return err
	}
	defer done()
	return b.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Tx is a transaction over hull's records.
type Tx struct {
	tx *bolt.Tx
}

func (t *Tx) bucket(name []byte) *bolt.Bucket { return t.tx.Bucket(name) }

func (t *Tx) get(bucket []byte, key string, v any) error {
	b := t.bucket(bucket)
	if b == nil {
		return ErrNotFound
	}
	raw := b.Get([]byte(key))
	if raw == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("metadata %s/%s: %w", bucket, key, err)
	}
	return nil
}

func (t *Tx) put(bucket []byte, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return t.bucket(bucket).Put([]byte(key), raw)
}

func (t *Tx) del(bucket []byte, key string) error {
	return t.bucket(bucket).Delete([]byte(key))
}

func each[T any](t *Tx, bucket []byte, fn func(*T) error) error {
	b := t.bucket(bucket)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, raw []byte) error {
		v := new(T)
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("metadata %s/%s: %w", bucket, k, err)
		}
		return fn(v)
	})
}

// Image returns the image with the given ID.
func (t *Tx) Image(id digest.Digest) (*Image, error) {
	var img Image
	if err := t.get(bucketImages, id.String(), &img); err != nil {
		return nil, err
	}
	return &img, nil
}

// PutImage stores an image record.
func (t *Tx) PutImage(img *Image) error { return t.put(bucketImages, img.ID.String(), img) }

// DeleteImage removes an image record (not its names or layers).
func (t *Tx) DeleteImage(id digest.Digest) error { return t.del(bucketImages, id.String()) }

// Images returns every image, newest first.
func (t *Tx) Images() ([]*Image, error) {
	var out []*Image
	err := each(t, bucketImages, func(i *Image) error { out = append(out, i); return nil })
	sort.SliceStable(out, func(a, b int) bool {
		if !out[a].Created.Equal(out[b].Created) {
			return out[a].Created.After(out[b].Created)
		}
		return out[a].Added.After(out[b].Added)
	})
	return out, err
}

// Name resolves a full reference to an image ID.
func (t *Tx) Name(ref string) (digest.Digest, error) {
	b := t.bucket(bucketNames)
	if b == nil {
		return "", ErrNotFound
	}
	raw := b.Get([]byte(ref))
	if raw == nil {
		return "", ErrNotFound
	}
	return digest.Digest(raw), nil
}

// SetName points a reference at an image, returning the image it pointed
// at before ("" if none).
func (t *Tx) SetName(ref string, id digest.Digest) (digest.Digest, error) {
	b := t.bucket(bucketNames)
	old := digest.Digest(b.Get([]byte(ref)))
	return old, b.Put([]byte(ref), []byte(id))
}

// DeleteName removes a reference.
func (t *Tx) DeleteName(ref string) error { return t.del(bucketNames, ref) }

// Names returns every reference and its image ID.
func (t *Tx) Names() (map[string]digest.Digest, error) {
	out := map[string]digest.Digest{}
	b := t.bucket(bucketNames)
	if b == nil {
		return out, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		out[string(k)] = digest.Digest(v)
		return nil
	})
	return out, err
}

// NamesOf returns the references that point at an image, sorted.
func (t *Tx) NamesOf(id digest.Digest) ([]string, error) {
	names, err := t.Names()
	var out []string
	for n, d := range names {
		if d == id {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, err
}

// Layer returns the layer with the given chain ID.
func (t *Tx) Layer(chainID digest.Digest) (*Layer, error) {
	var l Layer
	if err := t.get(bucketLayers, chainID.String(), &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// PutLayer stores a layer record.
func (t *Tx) PutLayer(l *Layer) error { return t.put(bucketLayers, l.ChainID.String(), l) }

// DeleteLayer removes a layer record.
func (t *Tx) DeleteLayer(chainID digest.Digest) error {
	return t.del(bucketLayers, chainID.String())
}

// Layers returns every layer record.
func (t *Tx) Layers() ([]*Layer, error) {
	var out []*Layer
	err := each(t, bucketLayers, func(l *Layer) error { out = append(out, l); return nil })
	return out, err
}

// Rootfs returns a container root filesystem record.
func (t *Tx) Rootfs(id string) (*Rootfs, error) {
	var r Rootfs
	if err := t.get(bucketRootfs, id, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// PutRootfs stores a container root filesystem record.
func (t *Tx) PutRootfs(r *Rootfs) error { return t.put(bucketRootfs, r.ID, r) }

// DeleteRootfs removes a container root filesystem record.
func (t *Tx) DeleteRootfs(id string) error { return t.del(bucketRootfs, id) }

// Rootfses returns every container root filesystem record.
func (t *Tx) Rootfses() ([]*Rootfs, error) {
	var out []*Rootfs
	err := each(t, bucketRootfs, func(r *Rootfs) error { out = append(out, r); return nil })
	return out, err
}

// Lease returns a lease.
func (t *Tx) Lease(id string) (*Lease, error) {
	var l Lease
	if err := t.get(bucketLeases, id, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// PutLease stores a lease.
func (t *Tx) PutLease(l *Lease) error { return t.put(bucketLeases, l.ID, l) }

// DeleteLease removes a lease.
func (t *Tx) DeleteLease(id string) error { return t.del(bucketLeases, id) }

// Leases returns every lease.
func (t *Tx) Leases() ([]*Lease, error) {
	var out []*Lease
	err := each(t, bucketLeases, func(l *Lease) error { out = append(out, l); return nil })
	return out, err
}

// Setting returns a store-wide setting ("" when unset).
func (t *Tx) Setting(key string) string {
	b := t.bucket(bucketSettings)
	if b == nil {
		return ""
	}
	return string(b.Get([]byte(key)))
}

// SetSetting stores a store-wide setting.
func (t *Tx) SetSetting(key, value string) error {
	return t.bucket(bucketSettings).Put([]byte(key), []byte(value))
}

// NewLease makes a lease for the calling process.
func NewLease(id string) (*Lease, error) {
	st, err := processStart(os.Getpid())
	if err != nil {
		return nil, err
	}
	return &Lease{ID: id, PID: os.Getpid(), Start: st, Created: time.Now().UTC()}, nil
}

// processStart reads a process's start time (field 22 of /proc/PID/stat).
func processStart(pid int) (uint64, error) {
	st, err := proc.ReadStat(pid)
	return st.StartTime, err
}

// Record reads the JSON record under key in one of the engine's buckets.
func (t *Tx) Record(bucket, key string, v any) error { return t.get([]byte(bucket), key, v) }

// RecordExists reports whether a key is in a bucket.
func (t *Tx) RecordExists(bucket, key string) bool {
	b := t.bucket([]byte(bucket))
	return b != nil && b.Get([]byte(key)) != nil
}

// PutRecord stores v as JSON under key.
func (t *Tx) PutRecord(bucket, key string, v any) error { return t.put([]byte(bucket), key, v) }

// DeleteRecord removes a key.
func (t *Tx) DeleteRecord(bucket, key string) error { return t.del([]byte(bucket), key) }

// EachRecord calls fn with each key and raw JSON value of a bucket.
func (t *Tx) EachRecord(bucket string, fn func(key string, raw []byte) error) error {
	b := t.bucket([]byte(bucket))
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}
