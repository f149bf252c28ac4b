package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/thecolonycc/colonyauth"
	"github.com/thecolonycc/colonyauth/broker"
)

const serveUsage = `usage: colonytoken serve [flags]

The host broker: every Colony client on this host (the Python, JS and Go
SDKs, curl) points its base URL at it, and they all share the host's 30
exchanges an hour, one prober during an outage and one exchange per key,
with the Go programs that use the same cache directory. POST /auth/token is
answered from the cache or exchanged; every other request is proxied to the
Colony unchanged. GET /-/status shows the host record, GET /-/healthz says ok.

It listens on loopback unless given --tls-cert and --tls-key, or a Unix
socket (--listen unix:PATH, mode 0600). Once it accepts connections it
prints the clients' base URL on stderr. SIGINT and SIGTERM stop it after
the requests in flight (at most 5 s); it then exits 0.

Flags:
`

// serve runs the host broker until ctx ends.
func serve(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("colonytoken serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, serveUsage); fs.PrintDefaults() }
	listen := fs.String("listen", "127.0.0.1:8787", "`ADDR` to listen on: HOST:PORT (port 0 picks one) or unix:PATH")
	baseURL := fs.String("base-url", "", "the Colony's base `URL` (default $COLONY_BASE_URL, else "+colonyauth.DefaultBaseURL+")")
	cacheDir := fs.String("cache-dir", "", "the host's cache `DIR` (default os.UserCacheDir()/colonyauth, as colonytoken and WithFileCache(\"\"))")
	wait := fs.Duration("wait", broker.DefaultWait, "how long a request waits for a token while /auth/token is failing, before 503")
	tlsCert := fs.String("tls-cert", "", "TLS certificate `FILE` (with --tls-key: serve https, on any address)")
	tlsKey := fs.String("tls-key", "", "TLS key `FILE`")
	verbose := fs.Bool("v", false, "log proxied requests too")
	if code, ok := parseFlags(fs, args, e.stderr, ""); !ok {
		return code
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		fmt.Fprintln(e.stderr, "colonytoken serve: --tls-cert and --tls-key go together")
		return exitUsage
	}
	if *wait <= 0 {
		fmt.Fprintln(e.stderr, "colonytoken serve: --wait must be positive")
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, nil))
	b, err := broker.New(broker.Config{
		Upstream: firstOf(*baseURL, e.getenv("COLONY_BASE_URL"), colonyauth.DefaultBaseURL),
		CacheDir: *cacheDir, Wait: *wait, Logger: logger, Verbose: *verbose, Transport: e.transport,
	})
	if err != nil {
		fmt.Fprintln(e.stderr, "colonytoken serve:", err)
		return exitUsage
	}
	ln, scheme, err := listenOn(*listen, *tlsCert, *tlsKey)
	if err != nil {
		fmt.Fprintln(e.stderr, "colonytoken serve:", err)
		return exitUsage
	}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	if strings.HasPrefix(*listen, "unix:") {
		fmt.Fprintf(e.stderr, "colonytoken serve: listening on %s; clients use base path %s\n", *listen, b.Path())
	} else {
		fmt.Fprintf(e.stderr, "colonytoken serve: clients use %s://%s%s\n", scheme, ln.Addr(), b.Path())
	}
	select {
	case err := <-done:
		fmt.Fprintln(e.stderr, "colonytoken serve:", err)
		return exitError
	case <-ctx.Done():
	}
	fmt.Fprintln(e.stderr, "colonytoken serve: stopping; finishing the requests in flight (5 s at most)")
	stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(stop); err != nil {
		srv.Close()
	}
	fmt.Fprintln(e.stderr, "colonytoken serve: stopped")
	return exitOK
}

// listenOn listens on addr: loopback TCP, any TCP address with TLS, or a
// Unix socket made 0600.
func listenOn(addr, cert, key string) (ln net.Listener, scheme string, err error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(path) // a socket left by an earlier run
		}
		old := umask(0o177)
		ln, err = net.Listen("unix", path)
		umask(old)
		if err != nil {
			return nil, "", err
		}
		return ln, "http", os.Chmod(path, 0o600)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", fmt.Errorf("--listen %q: want HOST:PORT or unix:PATH", addr)
	}
	if cert == "" {
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, "", fmt.Errorf("--listen %q is not loopback: the broker hands out tokens, so anything else needs --tls-cert and --tls-key (or a Unix socket)", addr)
		}
		ln, err = net.Listen("tcp", addr)
		return ln, "http", err
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, "", fmt.Errorf("--tls-cert/--tls-key: %v", err)
	}
	ln, err = tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	return ln, "https", err
}
