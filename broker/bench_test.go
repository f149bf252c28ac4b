package broker

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// benchBroker is a broker on loopback in front of a loopback fake Colony.
func benchBroker(b *testing.B) (*colonyauthtest.Server, *Broker, *httptest.Server) {
	srv := colonyauthtest.NewServer()
	b.Cleanup(srv.Close)
	br, err := New(Config{Upstream: srv.URL, CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(br)
	b.Cleanup(hs.Close)
	return srv, br, hs
}

// BenchmarkCachedToken: POST /auth/token for a key whose token is cached,
// through the broker on loopback, beside the loopback round trip alone
// (GET /-/healthz on the same broker) as the baseline.
func BenchmarkCachedToken(b *testing.B) {
	srv, br, hs := benchBroker(b)
	c := hs.Client()
	body := `{"api_key":"` + srv.APIKey + `"}`
	b.Run("loopback round trip (healthz)", func(b *testing.B) {
		loop(b, func() (*http.Response, error) { return c.Get(hs.URL + "/-/healthz") })
	})
	b.Run("broker, cached", func(b *testing.B) {
		loop(b, func() (*http.Response, error) {
			return c.Post(hs.URL+br.Path()+"/auth/token", "application/json", strings.NewReader(body))
		})
	})
}

// BenchmarkProxy: GET /users/me through the broker, beside the same
// request straight to the (loopback) Colony.
func BenchmarkProxy(b *testing.B) {
	srv, br, hs := benchBroker(b)
	resp, err := http.Post(hs.URL+br.Path()+"/auth/token", "application/json", strings.NewReader(`{"api_key":"`+srv.APIKey+`"}`))
	if err != nil {
		b.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	decode(resp, &tok)
	for name, url := range map[string]string{"direct": srv.URL + "/users/me", "through the broker": hs.URL + br.Path() + "/users/me"} {
		b.Run(name, func(b *testing.B) {
			loop(b, func() (*http.Response, error) {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
				return http.DefaultClient.Do(req)
			})
		})
	}
}

// loop runs req once per iteration; every answer must be 200.
func loop(b *testing.B, req func() (*http.Response, error)) {
	b.ReportAllocs()
	for b.Loop() {
		resp, err := req()
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatal(resp.Status)
		}
	}
}
