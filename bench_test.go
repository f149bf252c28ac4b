package colonyauth

// Benchmarks, each beside its baseline so that one run gives the ratio:
//
//	go test -run '^$' -bench . -benchmem -count 10 | tee new.txt && benchstat new.txt
//
// BENCHMARKS.md records the numbers and the machine.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"golang.org/x/oauth2"
)

// benchJWT is a realistic Colony token: a JWT whose exp is far ahead.
var benchJWT = fakeJWT(`{"sub":"agent-1","iat":1779000000,"exp":4102444800}`)

// BenchmarkCachedToken: Token on a fresh cached token, from all CPUs at
// once, against oauth2.ReuseTokenSource over a static token (a mutex and a
// time.Now per call).
func BenchmarkCachedToken(b *testing.B) {
	exp := time.Now().Add(time.Hour)
	reuse := oauth2.ReuseTokenSource(nil, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: benchJWT, Expiry: exp}))
	hc := handlerClient(func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, `{"access_token":"`+benchJWT+`","token_type":"bearer"}`)
	})
	ours := New(testKey, WithHTTPClient(hc))
	sharing := New(testKey, WithHTTPClient(hc), WithCache(NewMemoryCache())) // the Ledger is never on the cached path
	for _, c := range []struct {
		name string
		ts   oauth2.TokenSource
	}{{"oauth2.ReuseTokenSource", reuse}, {"colonyauth", ours}, {"colonyauth_sharing_a_Ledger", sharing}} {
		if _, err := c.ts.Token(); err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.ts.Token(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkLedgerUpdate: one Update of a host record (what a source does
// twice around each exchange, never on the cached path): in memory, and in a
// cache directory (lock file, read, write-temp-and-rename) beside its
// baseline, a bare write-temp-and-rename of the same bytes.
func BenchmarkLedgerUpdate(b *testing.B) {
	record, _ := json.Marshal(&hostRecord{Slots: make([]int64, 30), OK: 1, Keys: map[string]*keyRecord{"k": {Obtained: 1}}})
	fn := func([]byte) ([]byte, error) { return record, nil }
	dir := b.TempDir()
	fc := fileCache{dir: dir}
	b.Run("memory", func(b *testing.B) {
		m := NewMemoryCache().(Ledger)
		b.ReportAllocs()
		for b.Loop() {
			if err := m.Update("host", fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("file_dir", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := fc.Update("host", fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline_write_and_rename", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := fc.write(filepath.Join(dir, "bare"), record); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkColdExchange: one exchange from a new source, against the same
// request written by hand with net/http and encoding/json, both through
// the same in-memory handler.
func BenchmarkColdExchange(b *testing.B) {
	body := []byte(`{"access_token":"` + benchJWT + `","token_type":"bearer","expires_in":86400}`)
	// Both use this client; like colonyauth's default client it has a timeout.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		return &http.Response{
			StatusCode: 200,
			Header:     http.Header{"Content-Type": {"application/json"}},
			Body:       io.NopCloser(bytes.NewReader(body)),
			Request:    r,
		}, nil
	})}
	b.Run("net/http+encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := handWritten(context.Background(), hc, DefaultBaseURL+"/auth/token", testKey); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("net/http+encoding/json+exp", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			tok, err := handWritten(context.Background(), hc, DefaultBaseURL+"/auth/token", testKey)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := handWrittenExp(tok.AccessToken); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("colonyauth", func(b *testing.B) {
		clk := &steppingClock{Clock: clock.New()}
		s := New(testKey, WithHTTPClient(hc), WithClock(clk))
		b.ReportAllocs()
		for b.Loop() {
			tok, err := s.Token()
			if err != nil {
				b.Fatal(err)
			}
			// So that the next Token exchanges again: a minute later, as
			// a token invalidated sooner makes the next exchange wait
			// (B27), which is not what this measures.
			clk.step(time.Minute + time.Second)
			s.Invalidate(tok)
		}
	})
}

// steppingClock is the real clock moved ahead by step, without the
// scheduler yields of clock.Mock (which would dominate a benchmark).
type steppingClock struct {
	clock.Clock
	ahead atomic.Int64
}

func (c *steppingClock) step(d time.Duration) { c.ahead.Add(int64(d)) }
func (c *steppingClock) Now() time.Time       { return c.Clock.Now().Add(time.Duration(c.ahead.Load())) }
func (c *steppingClock) Since(t time.Time) time.Duration {
	return c.Now().Sub(t)
}
func (c *steppingClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// BenchmarkNew: what a source costs to make, once per program.
func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if s := New(testKey); s.err != nil {
			b.Fatal(s.err)
		}
	}
}

// handWritten is the exchange as a careful user would write it without
// this package: POST the key, check the status, decode the token.
func handWritten(ctx context.Context, hc *http.Client, url, key string) (*oauth2.Token, error) {
	payload, err := json.Marshal(map[string]string{"api_key": key})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(resp.Status)
	}
	var out struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: out.AccessToken, TokenType: "Bearer", Expiry: time.Now().Add(time.Duration(out.ExpiresIn) * time.Second)}, nil
}

// handWrittenExp reads the JWT's exp as a careful user would, to know when
// to refresh: the work colonyauth does beyond handWritten (B6).
func handWrittenExp(jwt string) (time.Time, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return time.Time{}, errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, err
	}
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return time.Time{}, err
	}
	return time.Unix(claims.Exp, 0), nil
}

// staticHeader is the baseline client: a fixed Authorization header.
type staticHeader struct {
	base http.RoundTripper
	auth string
}

func (t staticHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", t.auth)
	return t.base.RoundTrip(r)
}

// BenchmarkAPIGet: a GET through each kind of authenticated client to a
// loopback server, against a plain client that sets a static header.
func BenchmarkAPIGet(b *testing.B) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+benchJWT {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, `{"id":"agent-1"}`)
	}))
	defer api.Close()
	tokens := handlerClient(func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, `{"access_token":"`+benchJWT+`","token_type":"bearer"}`)
	})
	base := api.Client()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, base)
	clients := []struct {
		name string
		c    *http.Client
	}{
		{"static header", &http.Client{Transport: staticHeader{base: base.Transport, auth: "Bearer " + benchJWT}}},
		{"colonyauth.NewClient", NewClient(ctx, New(testKey, WithBaseURL(api.URL), WithHTTPClient(tokens)))},
		{"oauth2.NewClient", oauth2.NewClient(ctx, New(testKey, WithBaseURL(api.URL), WithHTTPClient(tokens)))},
	}
	for _, c := range clients {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.c.Get(api.URL + "/users/me")
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatal(resp.Status)
				}
			}
		})
	}
}
