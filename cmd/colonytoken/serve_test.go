package main

// The host broker as a real process (B35–B41): colonytoken serve in front
// of a loopback colonyauthtest server, with Go clients. The tests with the
// official Python SDK's processes are in sdk_test.go (-tags sdk).

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// broker is a running colonytoken serve process.
type brokerProc struct {
	URL string // the clients' base URL
	cmd *exec.Cmd
	out *syncBuffer // its stderr
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var urlLine = regexp.MustCompile(`clients use (https?://\S+)`)

// startBroker starts colonytoken serve on a free loopback port in front of
// upstream, with cache as the host's cache directory, and waits for the
// URL it prints once it accepts connections.
func startBroker(t *testing.T, bin, upstream, cache string, args ...string) *brokerProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--base-url", upstream, "--cache-dir", cache}, args...)...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &brokerProc{cmd: cmd, out: &syncBuffer{}}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.out.Write([]byte(sc.Text() + "\n"))
			if m := urlLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case p.URL = <-found:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the broker printed no URL: %s", p.out.String())
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return p
}

// stop sends SIGTERM and checks that the broker exits 0 within 5 s.
func (p *brokerProc) stop(t *testing.T) { p.stopWith(t, syscall.SIGTERM) }

// stopWith sends sig and checks that the broker exits 0 within 5 s.
func (p *brokerProc) stopWith(t *testing.T, sig os.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		assert.NoError(t, err, "exit 0 on %v: %s", sig, p.out.String())
	case <-time.After(6 * time.Second):
		t.Fatalf("the broker did not stop within 5 s of %v", sig)
	}
}

// B35: on SIGINT the broker finishes the request in flight (here a proxied
// one the upstream holds until the signal is sent), then exits 0.
func TestServeFinishesInFlightOnSIGINT(t *testing.T) {
	bin := buildCLI(t)
	arrived, release := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "done")
	}))
	defer up.Close()
	b := startBroker(t, bin, up.URL+"/api/v1", t.TempDir())
	type answer struct {
		body string
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := http.Get(b.URL + "/slow")
		if err != nil {
			got <- answer{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- answer{string(body), err}
	}()
	<-arrived
	require.NoError(t, b.cmd.Process.Signal(os.Interrupt))
	require.Eventually(t, func() bool { return strings.Contains(b.out.String(), "stopping") }, 5*time.Second, 10*time.Millisecond)
	close(release) // only once the broker is shutting down
	a := <-got
	require.NoError(t, a.err)
	assert.Equal(t, "done", a.body, "the request in flight was finished")
	b.stopWith(t, os.Interrupt)
}

func newKeys(srv *colonyauthtest.Server, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = srv.NewKey()
	}
	return keys
}

// B35, B39 with a Go client as the SDKs behave: 1,000 concurrent requests
// to the broker process are all answered, bad input gets the Colony's
// answers, a client that hangs up costs nothing, and GET /-/status and
// /-/healthz answer.
func TestBrokerProcessUnderLoad(t *testing.T) {
	bin := buildCLI(t)
	srv := colonyauthtest.NewServer()
	defer srv.Close()
	b := startBroker(t, bin, srv.URL, t.TempDir())
	keys := newKeys(srv, 20)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 200, MaxIdleConnsPerHost: 200}}
	codes := make([]int, 1000)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Go(func() {
			resp, err := client.Post(b.URL+"/auth/token", "application/json", strings.NewReader(`{"api_key":"`+keys[i%len(keys)]+`"}`))
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	assert.Equal(t, 1000, count2(codes, http.StatusOK))
	assert.Equal(t, len(keys), srv.Exchanges(), "one exchange per key")

	for body, want := range map[string]int{
		`{"api_key":"` + strings.Repeat("x", 70000) + `"}`: http.StatusRequestEntityTooLarge,
		`not json`:                     http.StatusUnprocessableEntity,
		`{"api_key":""}`:               http.StatusUnprocessableEntity,
		`{"api_key":"eyJhbGci.e30.x"}`: http.StatusUnauthorized,
	} {
		resp, err := client.Post(b.URL+"/auth/token", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode)
	}
	resp, err := client.Get(b.URL + "/auth/token")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.URL+"/auth/token", strings.NewReader(`{"api_key":"`+srv.NewKey()+`"}`))
	srv.SetLatency(2 * time.Second)
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	_, err = client.Do(req)
	require.Error(t, err, "the client hung up")
	srv.SetLatency(0)

	root := strings.TrimSuffix(b.URL, "/api/v1")
	for _, path := range []string{"/-/status", "/-/healthz"} {
		resp, err := client.Get(root + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.NotContains(t, string(body), "col_")
	}
	resp, err = client.Get(root + "/users/me")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "outside the path")
	b.stop(t)
}

func count2(codes []int, want int) (n int) {
	for _, c := range codes {
		if c == want {
			n++
		}
	}
	return n
}

// B35: anything but loopback needs TLS; a Unix socket is 0600 and serves;
// the broker stops with exit 0 when its context ends (SIGINT, SIGTERM).
func TestServeListening(t *testing.T) {
	srv := colonyauthtest.NewServer()
	defer srv.Close()
	e := func(stderr io.Writer) env {
		return env{getenv: func(string) string { return "" }, stdout: io.Discard, stderr: stderr}
	}
	var out syncBuffer
	code := serve(context.Background(), []string{"--listen", "0.0.0.0:0", "--base-url", srv.URL, "--cache-dir", t.TempDir()}, e(&out))
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, out.String(), "needs --tls-cert and --tls-key")

	code = serve(context.Background(), []string{"--tls-cert", "x.pem", "--base-url", srv.URL}, e(&out))
	assert.Equal(t, exitUsage, code, "--tls-cert without --tls-key")
	code = serve(context.Background(), []string{"--base-url", srv.URL, "extra"}, e(&out))
	assert.Equal(t, exitUsage, code, "a stray argument")
	assert.Equal(t, exitUsage, status([]string{"extra"}, e(&out)), "a stray argument to status")

	sock := filepath.Join(t.TempDir(), "broker.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var log syncBuffer
	go func() {
		done <- serve(ctx, []string{"--listen", "unix:" + sock, "--base-url", srv.URL, "--cache-dir", t.TempDir()}, e(&log))
	}()
	require.Eventually(t, func() bool { return strings.Contains(log.String(), "listening on unix:") }, 10*time.Second, 10*time.Millisecond)
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := client.Post("http://broker/api/v1/auth/token", "application/json", strings.NewReader(`{"api_key":"`+srv.APIKey+`"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	cancel()
	select {
	case code := <-done:
		assert.Equal(t, exitOK, code)
	case <-time.After(6 * time.Second):
		t.Fatal("serve did not stop")
	}
}

// B41: colonytoken status reads the host record without sending anything,
// as a table or as JSON.
func TestStatusCommand(t *testing.T) {
	bin := buildCLI(t)
	srv := colonyauthtest.NewServer()
	defer srv.Close()
	cache := t.TempDir()
	b := startBroker(t, bin, srv.URL, cache)
	resp, err := http.Post(b.URL+"/auth/token", "application/json", strings.NewReader(`{"api_key":"`+srv.APIKey+`"}`))
	require.NoError(t, err)
	resp.Body.Close()
	b.stop(t)
	before := len(srv.Requests())

	var out syncBuffer
	code := status([]string{"--base-url", srv.URL, "--cache-dir", cache}, env{getenv: func(string) string { return "" }, stdout: &out, stderr: &out})
	require.Equal(t, exitOK, code, out.String())
	for _, want := range []string{"answers       1 of 30 in the last hour", "429 hold      none", "outage        none", "coordination  working"} {
		assert.Contains(t, out.String(), want)
	}
	var js syncBuffer
	code = status([]string{"--json", "--base-url", srv.URL, "--cache-dir", cache}, env{getenv: func(string) string { return "" }, stdout: &js, stderr: &js})
	require.Equal(t, exitOK, code)
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(js.String()), &st), js.String())
	assert.EqualValues(t, 1, st["answers_last_hour"])
	assert.Equal(t, true, st["coordinating"])
	assert.Equal(t, before, len(srv.Requests()), "nothing sent")
	assert.NotContains(t, out.String()+js.String(), srv.APIKey)
}

// B35: with --tls-cert and --tls-key the broker serves https (and may then
// listen beyond loopback); the URL it prints says https.
func TestServeTLS(t *testing.T) {
	srv := colonyauthtest.NewServer()
	defer srv.Close()
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- serve(ctx, []string{"--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile,
			"--base-url", srv.URL, "--cache-dir", t.TempDir()}, env{getenv: func(string) string { return "" }, stdout: io.Discard, stderr: &log})
	}()
	require.Eventually(t, func() bool { return urlLine.MatchString(log.String()) }, 10*time.Second, 10*time.Millisecond)
	base := urlLine.FindStringSubmatch(log.String())[1]
	require.True(t, strings.HasPrefix(base, "https://127.0.0.1:"), base)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(certPEM))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Post(base+"/auth/token", "application/json", strings.NewReader(`{"api_key":"`+srv.APIKey+`"}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	cancel()
	assert.Equal(t, exitOK, <-done)
}

// selfSigned is a certificate for 127.0.0.1, and its key, in PEM.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "colonytoken test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
