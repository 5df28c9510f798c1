package registrytest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"testing"
)

func TestStart(t *testing.T) {
	r := Start(t)

	resp, err := http.Get(r.URL("/v2/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/: %s", resp.Status)
	}
	if v := resp.Header.Get("Docker-Distribution-Api-Version"); v != "registry/2.0" {
		t.Errorf("Docker-Distribution-Api-Version = %q, want registry/2.0", v)
	}

	// A blob upload (POST for a session, PUT with the data) and read-back
	// shows the storage directory is usable, not just the HTTP server.
	blob := []byte("registrytest blob\n")
	dgst := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
	resp, err = http.Post(r.URL("/v2/test/blob/blobs/uploads/"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %s", resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	q.Set("digest", dgst)
	loc.RawQuery = q.Encode()
	req, err := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("finish upload: %s", resp.Status)
	}
	resp, err = http.Get(r.URL("/v2/test/blob/blobs/" + dgst))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, blob) {
		t.Fatalf("blob read-back: %s, %q, %v", resp.Status, got, err)
	}
}

// Two registries in one test must get different ports and storage.
func TestStartTwice(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Host == b.Host || a.Dir == b.Dir {
		t.Fatalf("registries share %s/%s and %s/%s", a.Host, a.Dir, b.Host, b.Dir)
	}
}

func TestStartWithAuth(t *testing.T) {
	r := StartWithAuth(t, "alice", "secret")
	for _, c := range []struct {
		user, pass string
		want       int
	}{{"", "", http.StatusUnauthorized}, {"alice", "wrong", http.StatusUnauthorized}, {"alice", "secret", http.StatusOK}} {
		req, _ := http.NewRequest(http.MethodGet, r.URL("/v2/"), nil)
		if c.user != "" {
			req.SetBasicAuth(c.user, c.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s:%s: %s, want %d", c.user, c.pass, resp.Status, c.want)
		}
	}
}
