package broker

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// B38: a streaming answer is passed on as it comes (each chunk flushed),
// method, query, body and headers go through, hop-by-hop headers and
// X-Forwarded-For do not.
func TestProxyStreams(t *testing.T) {
	release := make(chan struct{})
	var got *http.Request
	var gotBody string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: second\n\n")
	}))
	defer up.Close()
	b, err := New(Config{Upstream: up.URL + "/api/v1", CacheDir: t.TempDir()})
	require.NoError(t, err)
	hs := httptest.NewServer(b)
	defer hs.Close()

	req, _ := http.NewRequest(http.MethodPut, hs.URL+"/api/v1/stream?x=1&y=2", stringsReader("payload"))
	req.Header.Set("X-Custom", "kept")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "dropped")
	resp, err := hs.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err, "the first chunk arrives before the answer ends")
	assert.Equal(t, "data: first\n", line)
	close(release)
	assert.Equal(t, http.MethodPut, got.Method)
	assert.Equal(t, "/api/v1/stream", got.URL.Path)
	assert.Equal(t, "x=1&y=2", got.URL.RawQuery)
	assert.Equal(t, "payload", gotBody)
	assert.Equal(t, "kept", got.Header.Get("X-Custom"))
	assert.Empty(t, got.Header.Get("X-Hop"), "hop-by-hop headers are dropped")
	assert.Empty(t, got.Header.Get("X-Forwarded-For"))
}

// B38: the upstream's TLS certificate is verified: an upstream with a
// certificate nobody trusts gets nothing, and the client gets 502.
func TestProxyVerifiesUpstreamTLS(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("a request reached an upstream whose certificate is not trusted")
	}))
	defer up.Close()
	b, err := New(Config{Upstream: up.URL + "/api/v1", CacheDir: t.TempDir()})
	require.NoError(t, err)
	w := httptest.NewRecorder()
	b.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://broker/api/v1/users/me", nil))
	assert.Equal(t, http.StatusBadGateway, w.Code)
}
