package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"time"
)

// runShell runs command with sh -c and returns its stdout (at most 1 KiB
// is kept: a code is short); its stderr goes to stderr.
func runShell(ctx context.Context, command string, stderr io.Writer) (string, error) {
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	var out bytes.Buffer
	cmd.Stdout = &limitedWriter{w: &out, left: 1 << 10}
	cmd.Stderr = stderr
	cmd.WaitDelay = time.Second // a child that keeps stdout open cannot hold us past the timeout
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return "", errors.New(exit.String()) // "exit status 1": no output echoed
		}
		return "", err
	}
	return out.String(), nil
}

// limitedWriter keeps the first left bytes and drops the rest.
type limitedWriter struct {
	w    io.Writer
	left int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	n := len(p)
	if l.left > 0 {
		keep := p[:min(len(p), l.left)]
		l.left -= len(keep)
		l.w.Write(keep)
	}
	return n, nil
}
