package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"
)

// runShell runs command with sh -c and returns its stdout (at most 1 KiB
// is kept: a code is short); its stderr goes to stderr.
func runShell(ctx context.Context, command string, stderr io.Writer) (string, error) {
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Env = withoutKey(os.Environ()) // the command needs no key: B34
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

// withoutKey is env without COLONY_API_KEY.
func withoutKey(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "COLONY_API_KEY=") {
			out = append(out, kv)
		}
	}
	return out
}

// redactingWriter passes --totp-command's stderr through line by line,
// with the key, any echo of its first 8 characters, and anything shaped
// like a Colony key or a token replaced by [REDACTED] (B34).
type redactingWriter struct {
	w      io.Writer
	secret string
	mu     sync.Mutex
	line   []byte
}

var secretLike = regexp.MustCompile(`col_[A-Za-z0-9_\-]+|eyJ[A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]*){0,2}`)

func (r *redactingWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.line = append(r.line, p...)
	for {
		i := bytes.IndexByte(r.line, '\n')
		if i < 0 {
			if len(r.line) > 4<<10 { // a line without end: pass it on in pieces
				r.flush(len(r.line))
			}
			return len(p), nil
		}
		r.flush(i + 1)
	}
}

// Close writes what is left of the last line.
func (r *redactingWriter) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.line) > 0 {
		r.flush(len(r.line))
	}
	return nil
}

func (r *redactingWriter) flush(n int) {
	text := string(r.line[:n])
	r.line = r.line[n:]
	if r.secret != "" {
		text = strings.ReplaceAll(text, r.secret, "[REDACTED]")
		if len(r.secret) >= 8 {
			for {
				i := strings.Index(text, r.secret[:8])
				if i < 0 {
					break
				}
				j := i + 8
				for j < len(text) && j-i < len(r.secret) && text[j] == r.secret[j-i] {
					j++
				}
				text = text[:i] + "[REDACTED]" + text[j:]
			}
		}
	}
	io.WriteString(r.w, secretLike.ReplaceAllString(text, "[REDACTED]"))
}
