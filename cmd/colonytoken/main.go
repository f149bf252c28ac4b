// Command colonytoken prints a Colony bearer token for $COLONY_API_KEY, so
// that shell scripts can call the API:
//
//	curl -H "Authorization: Bearer $(colonytoken)" https://thecolony.ai/api/v1/users/me
//
// Tokens are cached (os.UserCacheDir()/colonyauth), so repeated runs do not
// call /auth/token. "colonytoken demo" shows the retry loop riding through a
// failing /auth/token against an in-process fake Colony: no key, no network.
//
// Exit codes: 0 ok, 1 other error, 2 usage, 3 credentials rejected (bad key
// or two-factor code), 4 unavailable (retries spent or rate limited).
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
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth"
	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// Exit codes.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitRejected    = 3
	exitUnavailable = 4
)

const usage = `usage: colonytoken [flags]     print a bearer token for $COLONY_API_KEY
       colonytoken demo          watch the retry loop against a fake Colony

The key comes from $COLONY_API_KEY, or from the file named by --key-file
(there is no flag for the key itself: it would show in ps). Only the token
is printed on stdout, so this works:

  curl -H "Authorization: Bearer $(colonytoken)" https://thecolony.ai/api/v1/users/me

Tokens are cached in os.UserCacheDir()/colonyauth (files 0600, named by a
hash; the key is never written), so repeated runs do not call /auth/token.

Exit codes: 0 ok, 1 other error, 2 usage, 3 credentials rejected (bad key or
two-factor code), 4 unavailable (retries spent or rate limited).

Flags:
`

// env is what run needs from the outside world; tests supply their own.
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	opts           []colonyauth.Option // appended to the source's options
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], env{getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, e env) int {
	if len(args) > 0 && args[0] == "demo" {
		return demo(ctx, e)
	}
	fs := flag.NewFlagSet("colonytoken", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, usage); fs.PrintDefaults() }
	keyFile := fs.String("key-file", "", "read the API key from `PATH` instead of $COLONY_API_KEY")
	baseURL := fs.String("base-url", "", "Colony API base `URL` (default $COLONY_BASE_URL, else "+colonyauth.DefaultBaseURL+")")
	asJSON := fs.Bool("json", false, "print {\"access_token\", \"token_type\", \"expiry\"} instead of the bare token")
	noCache := fs.Bool("no-cache", false, "neither read nor write the token cache")
	verbose := fs.Bool("v", false, "log retries to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "colonytoken: unexpected argument %q (the key comes from $COLONY_API_KEY or --key-file)\n", fs.Arg(0))
		return exitUsage
	}

	key := e.getenv("COLONY_API_KEY")
	if *keyFile != "" {
		data, err := os.ReadFile(*keyFile)
		if err != nil {
			fmt.Fprintf(e.stderr, "colonytoken: cannot read --key-file: %v\n", err)
			return exitUsage
		}
		key = strings.TrimSpace(string(data))
	}
	if key == "" {
		fmt.Fprintln(e.stderr, "colonytoken: no API key: set COLONY_API_KEY or pass --key-file PATH")
		return exitUsage
	}
	if *baseURL == "" {
		*baseURL = e.getenv("COLONY_BASE_URL")
	}
	if *baseURL == "" {
		*baseURL = colonyauth.DefaultBaseURL
	}

	opts := []colonyauth.Option{colonyauth.WithBaseURL(*baseURL)}
	if !*noCache {
		opts = append(opts, colonyauth.WithFileCache(""))
	}
	if *verbose {
		opts = append(opts, colonyauth.WithLogger(slog.New(slog.NewTextHandler(e.stderr, nil))))
	}
	src := colonyauth.New(key, append(opts, e.opts...)...)
	tok, err := src.TokenContext(ctx)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitCode(err)
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

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	var cfg *colonyauth.Error
	switch {
	case errors.Is(err, colonyauth.ErrInvalidKey), errors.Is(err, colonyauth.ErrTwoFactorRequired),
		errors.Is(err, colonyauth.ErrTwoFactorInvalid):
		return exitRejected
	case errors.Is(err, colonyauth.ErrUnavailable), errors.Is(err, colonyauth.ErrRateLimited):
		return exitUnavailable
	case errors.As(err, &cfg) && cfg.Attempts == 0 && cfg.Err == nil:
		return exitUsage // an invalid --base-url and the like
	}
	return exitError
}

// demo runs the real retry loop against an in-process fake Colony whose
// first three exchanges answer 502, on a short schedule, then calls the API
// through oauth2.NewClient.
func demo(ctx context.Context, e env) int {
	colony := colonyauthtest.NewUnstarted() // served in memory: no network
	colony.FailNext(3, http.StatusBadGateway, 0)
	retry := colonyauth.RetryConfig{MaxRetries: 6, BaseDelay: 200 * time.Millisecond, MaxDelay: 2 * time.Second}

	fmt.Fprintf(e.stdout, "demo: a fake Colony at %s whose /auth/token answers 502 three times\n", colony.URL)
	fmt.Fprintf(e.stdout, "demo: retry schedule %v, %v, %v, … (the default is 2s, 4s, 8s, … 60s)\n", retry.Delay(0), retry.Delay(1), retry.Delay(2))
	logger := slog.New(slog.NewTextHandler(e.stdout, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	src := colonyauth.New(colony.APIKey, append([]colonyauth.Option{
		colonyauth.WithBaseURL(colony.URL),
		colonyauth.WithHTTPClient(colony.Client()),
		colonyauth.WithRetry(retry),
		colonyauth.WithLogger(logger),
	}, e.opts...)...)

	start := time.Now()
	client := oauth2.NewClient(context.WithValue(ctx, oauth2.HTTPClient, colony.Client()), src)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, colony.URL+"/users/me", nil)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitError
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitCode(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Fprintf(e.stdout, "demo: token after %d exchanges in %v\n", colony.Exchanges(), time.Since(start).Round(100*time.Millisecond))
	fmt.Fprintf(e.stdout, "GET /users/me: %s %s\n", resp.Status, strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusOK {
		return exitError
	}
	return exitOK
}
