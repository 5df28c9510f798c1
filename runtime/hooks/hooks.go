// Package hooks runs OCI lifecycle hooks: each hook's program gets the
// container state as JSON on stdin and must finish within its timeout.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Run executes hooks in order and stops at the first failure, whose error
// names the hook kind, the program and what it printed.
func Run(kind string, hs []specs.Hook, state *specs.State) error {
	return run(kind, hs, state, false)
}

// RunAll runs every hook even when some fail, as the spec requires for
// poststart and poststop hooks, and returns the failures joined.
func RunAll(kind string, hs []specs.Hook, state *specs.State) error {
	return run(kind, hs, state, true)
}

func run(kind string, hs []specs.Hook, state *specs.State, all bool) error {
	if len(hs) == 0 {
		return nil
	}
	data, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("encode state for %s hooks: %w", kind, err)
	}
	var errs []error
	for i, h := range hs {
		if err := runOne(h, data); err != nil {
			errs = append(errs, fmt.Errorf("%s hook #%d (%s): %w", kind, i, h.Path, err))
			if !all {
				break
			}
		}
	}
	return errors.Join(errs...)
}

func runOne(h specs.Hook, state []byte) error {
	ctx := context.Background()
	if h.Timeout != nil {
		if *h.Timeout <= 0 {
			return fmt.Errorf("timeout must be positive, got %d", *h.Timeout)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	}
	// A hook sees only the environment the spec gives it.
	cmd.Env = h.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Stdin = bytes.NewReader(state)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// Do not wait for grandchildren that keep the output pipe open.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("timed out after %ds", *h.Timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if msg != "" {
			return fmt.Errorf("%w: %s", err, msg)
		}
		return err
	}
	return nil
}
