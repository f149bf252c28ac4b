// Command colonytoken prints a Colony bearer token for $COLONY_API_KEY, so
// that shell scripts can call the API:
//
//	curl -H "Authorization: Bearer $(colonytoken)" https://thecolony.ai/api/v1/users/me
//
// Tokens are cached (os.UserCacheDir()/colonyauth), so repeated runs do not
// call /auth/token, and a cached token past its refresh point is refreshed
// before it is printed. "colonytoken demo" shows the retry loop riding
// through a failing /auth/token against an in-process fake Colony: no key,
// no network.
//
// Exit codes: 0 ok, 1 other error, 2 usage (no key, an empty or unreadable
// --key-file, a bad flag, a bad base URL or one that answers 404), 3
// credentials rejected (bad key, two-factor code, or a failing
// --totp-command), 4 unavailable (retries spent or rate limited), 130
// interrupted (SIGINT), 143 terminated (SIGTERM). "colonytoken help" is
// "colonytoken -h"; --version prints the version.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/thecolonycc/colonyauth"
)

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitRejected    = 3
	exitUnavailable = 4
	exitInterrupted = 130 // 128 + SIGINT
	exitTerminated  = 143 // 128 + SIGTERM
)

const usage = `usage: colonytoken [flags]     print a bearer token for $COLONY_API_KEY
       colonytoken demo          watch the retry loop against a fake Colony
       colonytoken serve         the host broker for every Colony client (serve -h)
       colonytoken status        what the host record says (status -h)
       colonytoken help          this text (as -h)

The key comes from $COLONY_API_KEY, or from the file named by --key-file
(there is no flag for the key itself: it would show in ps). Only the token
is printed on stdout, so this works:

  curl -H "Authorization: Bearer $(colonytoken)" https://thecolony.ai/api/v1/users/me

Tokens are cached in os.UserCacheDir()/colonyauth (a 0700 directory of 0600
files named by a hash; the key is never written), so repeated runs do not
call /auth/token; a cached token past its refresh point is refreshed first.
For an account with two-factor authentication, --totp-command (or
$COLONY_TOTP_COMMAND) is run with sh -c for each attempt and must print the
current code.

Exit codes: 0 ok, 1 other error, 2 usage (no key, an empty or unreadable
--key-file, a bad flag, a bad base URL or one without /auth/token: 404),
3 credentials rejected (bad key,
two-factor code, or a failing --totp-command), 4 unavailable (retries spent
or rate limited), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).

Flags:
`

// totpTimeout bounds one run of --totp-command (a variable for its test).
var totpTimeout = 30 * time.Second

// env is what run needs from the outside world; tests supply their own.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	signal         func() os.Signal    // the signal that ended ctx, if any
	opts           []colonyauth.Option // appended to the source's options
	transport      http.RoundTripper   // the broker's upstream transport (nil: the default)
}

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	var (
		mu  sync.Mutex
		got os.Signal
	)
	go func() {
		s := <-sigs
		mu.Lock()
		got = s
		mu.Unlock()
		cancel()
	}()
	code := run(ctx, os.Args[1:], env{
		getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr,
		signal: func() os.Signal { mu.Lock(); defer mu.Unlock(); return got },
	})
	os.Exit(code)
}

func run(ctx context.Context, args []string, e env) int {
	if len(args) > 0 {
		switch args[0] {
		case "demo":
			return demo(ctx, e)
		case "serve":
			return serve(ctx, args[1:], e)
		case "status":
			return status(args[1:], e)
		case "help":
			args = []string{"-h"} // as gh: "colonytoken help" is "colonytoken -h"
		}
	}
	fs := flag.NewFlagSet("colonytoken", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, usage); fs.PrintDefaults() }
	keyFile := fs.String("key-file", "", "read the API key from `PATH` instead of $COLONY_API_KEY")
	baseURL := fs.String("base-url", "", "Colony API base `URL` (default $COLONY_BASE_URL, else "+colonyauth.DefaultBaseURL+")")
	totpCommand := fs.String("totp-command", "", "shell `COMMAND` printing the current two-factor code (default $COLONY_TOTP_COMMAND)")
	asJSON := fs.Bool("json", false, "print {\"access_token\", \"token_type\", \"expiry\", \"refresh_at\"} instead of the bare token")
	noCache := fs.Bool("no-cache", false, "neither read nor write the token cache")
	verbose := fs.Bool("v", false, "log every retry to stderr, and where the token came from")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if code, ok := parseFlags(fs, args, e.stderr, " (the key comes from $COLONY_API_KEY or --key-file)"); !ok {
		return code
	}
	if *showVersion {
		fmt.Fprintln(e.stdout, "colonytoken", buildVersion())
		return exitOK
	}

	key, code := readKey(e, *keyFile)
	if code != exitOK {
		return code
	}
	*baseURL = firstOf(*baseURL, e.getenv("COLONY_BASE_URL"), colonyauth.DefaultBaseURL)
	*totpCommand = firstOf(*totpCommand, e.getenv("COLONY_TOTP_COMMAND"))

	p := &progress{stderr: e.stderr, verbose: *verbose}
	opts := []colonyauth.Option{colonyauth.WithBaseURL(*baseURL), colonyauth.WithContext(ctx), colonyauth.WithLogger(slog.New(p))}
	if !*noCache {
		opts = append(opts, colonyauth.WithFileCache(""))
	}
	if *totpCommand != "" {
		opts = append(opts, colonyauth.WithTOTP(totpFromCommand(ctx, *totpCommand, &redactingWriter{w: e.stderr, secret: key})))
	}
	src := colonyauth.New(key, append(opts, e.opts...)...)
	start := time.Now()
	tok, err := src.TokenContext(ctx)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(e.stderr, "colonytoken: interrupted")
			if e.signal != nil && e.signal() == syscall.SIGTERM {
				return exitTerminated
			}
			return exitInterrupted
		}
		fmt.Fprintln(e.stderr, cliMessage(err))
		return exitCode(err)
	}
	if *verbose { // one line when all went well, on stderr
		if p.exchanged.Load() {
			fmt.Fprintf(e.stderr, "colonytoken: exchanged in %v\n", roundForPeople(time.Since(start)))
		} else {
			fmt.Fprintf(e.stderr, "colonytoken: token from the cache, refresh at %s\n", tok.Expiry.Local().Format(time.RFC3339))
		}
	}
	if *asJSON {
		exp, _ := tok.Extra("expires_at").(time.Time)
		out, _ := json.Marshal(map[string]any{"access_token": tok.AccessToken, "token_type": tok.Type(), "expiry": exp, "refresh_at": tok.Expiry})
		fmt.Fprintln(e.stdout, string(out))
		return exitOK
	}
	fmt.Fprintln(e.stdout, tok.AccessToken)
	return exitOK
}

// readKey reads the key from --key-file or $COLONY_API_KEY, trimmed the
// same way (a trailing newline is no part of a key).
func readKey(e env, keyFile string) (string, int) {
	if keyFile == "" {
		key := strings.TrimSpace(e.getenv("COLONY_API_KEY"))
		if key == "" {
			fmt.Fprintln(e.stderr, "colonytoken: no API key: set COLONY_API_KEY or pass --key-file PATH")
			return "", exitUsage
		}
		return key, exitOK
	}
	info, err := os.Stat(keyFile)
	if err == nil && info.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(e.stderr, "colonytoken: warning: --key-file %s is readable by others (mode %v); chmod 600 it\n", keyFile, info.Mode().Perm())
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		fmt.Fprintf(e.stderr, "colonytoken: cannot read --key-file: %v\n", err)
		return "", exitUsage
	}
	key := strings.TrimSpace(string(data))
	if key == "" {
		fmt.Fprintf(e.stderr, "colonytoken: --key-file %s is empty: put the API key (col_…) in it\n", keyFile)
		return "", exitUsage
	}
	return key, exitOK
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// totpError is a failing --totp-command.
type totpError struct{ err error }

func (e *totpError) Error() string { return "--totp-command failed: " + e.err.Error() }
func (e *totpError) Unwrap() error { return e.err }

// totpFromCommand runs command with sh -c for each exchange attempt; its
// trimmed stdout is the code, its stderr passes through. The code is never
// echoed.
func totpFromCommand(ctx context.Context, command string, stderr io.Writer) func() (string, error) {
	return func() (string, error) {
		ctx, cancel := context.WithTimeout(ctx, totpTimeout)
		defer cancel()
		out, err := runShell(ctx, command, stderr)
		if c, ok := stderr.(io.Closer); ok {
			c.Close() // the last line, even without a newline
		}
		if ctx.Err() == context.DeadlineExceeded {
			return "", &totpError{fmt.Errorf("no code after %v", totpTimeout)}
		}
		if err != nil {
			return "", &totpError{err}
		}
		return strings.TrimSpace(out), nil
	}
}

// cliMessage is the library's message in the CLI's words: flags, not Go
// options.
func cliMessage(err error) string {
	return strings.NewReplacer(
		"use WithTOTP with a function that returns the current code", "pass --totp-command (or set COLONY_TOTP_COMMAND) with a command that prints the current code",
		"pass WithTOTP a function that computes the current code from the secret", "make --totp-command print the current code computed from the secret",
		" (WithHostLimit)", "",
		"the WithTOTP function failed", "the two-factor code could not be read",
	).Replace(err.Error())
}

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	var (
		cfg  *colonyauth.Error
		totp *totpError
	)
	switch {
	case errors.Is(err, colonyauth.ErrInvalidKey), errors.Is(err, colonyauth.ErrTwoFactorRequired),
		errors.Is(err, colonyauth.ErrTwoFactorInvalid), errors.As(err, &totp):
		return exitRejected
	case errors.Is(err, colonyauth.ErrUnavailable), errors.Is(err, colonyauth.ErrRateLimited):
		return exitUnavailable
	case errors.As(err, &cfg) && cfg.Attempts == 0 && cfg.Err == nil && cfg.StatusCode == 0:
		return exitUsage // an invalid --base-url and the like
	case errors.As(err, &cfg) && (cfg.StatusCode == http.StatusNotFound || cfg.StatusCode == http.StatusMethodNotAllowed):
		return exitUsage // /auth/token is not there: a wrong --base-url
	}
	return exitError
}

// progress is the CLI's log handler: with -v every record, as text;
// without, one line when retrying starts, and one when it waits for
// another process's attempts, so that a wait of minutes is not silent. stdout is never touched.
type progress struct {
	stderr    io.Writer
	verbose   bool
	exchanged atomic.Bool // the source logged an exchange (-v says so at the end)
	once      sync.Once
	waitOnce  sync.Once
	text      slog.Handler
}

func (p *progress) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || p.verbose
}

func (p *progress) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "colonyauth: token obtained" {
		p.exchanged.Store(true)
	}
	if p.verbose && r.Level >= slog.LevelInfo {
		if p.text == nil {
			p.text = slog.NewTextHandler(p.stderr, nil)
		}
		return p.text.Handle(ctx, r)
	}
	if p.verbose || r.Level < slog.LevelWarn {
		return nil
	}
	if strings.Contains(r.Message, "waiting for its attempts") {
		p.waitOnce.Do(func() {
			limit := colonyauth.DefaultRetry().Budget()
			r.Attrs(func(a slog.Attr) bool {
				if a.Key == "for" {
					limit = a.Value.Duration()
				}
				return true
			})
			fmt.Fprintf(p.stderr, "colonytoken: /auth/token is failing; waiting for another process's attempts for up to %v (Ctrl-C stops; -v shows more)\n", limit)
		})
		return nil
	}
	if !strings.Contains(r.Message, "retrying") {
		return nil
	}
	p.once.Do(func() {
		status := "a network error"
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "status" && a.Value.Int64() != 0 {
				status = fmt.Sprint(a.Value.Int64())
			}
			return true
		})
		fmt.Fprintf(p.stderr, "colonytoken: /auth/token answered %s; retrying for up to %v (Ctrl-C stops; -v shows each attempt)\n",
			status, colonyauth.DefaultRetry().Budget())
	})
	return nil
}

func (p *progress) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *progress) WithGroup(string) slog.Handler      { return p }

// buildVersion is the module version the binary was built from ("v0.1.0"
// for go install …@v0.1.0, "(devel)" from a checkout), and its Go version.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	return info.Main.Version + " " + info.GoVersion
}

// roundForPeople rounds d to the millisecond below a second, else to the
// tenth of a second.
func roundForPeople(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

// parseFlags parses the flags of a command. When it returns false the
// command ends with code: 0 after -h, 2 after a bad flag or a stray
// argument (named, with hint).
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, hint string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q%s\n", fs.Name(), fs.Arg(0), hint)
		return exitUsage, false
	}
	return exitOK, true
}
