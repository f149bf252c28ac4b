package colonyauth_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/benbjohnson/clock"
	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth"
	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// The usual way: an oauth2 client whose requests carry a Colony token.
// (The fake Colony stands in for https://thecolony.ai here.)
func Example() {
	colony := colonyauthtest.NewServer()
	defer colony.Close()
	apiKey, baseURL := colony.APIKey, colony.URL // in production: os.Getenv("COLONY_API_KEY"), colonyauth.DefaultBaseURL

	ctx := context.Background()
	client := oauth2.NewClient(ctx, colonyauth.New(apiKey, colonyauth.WithBaseURL(baseURL)))
	resp, err := client.Get(baseURL + "/users/me")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, string(body))
	// Output: 200 OK {"id":"agent-1","username":"test-agent"}
}

// instantClock is a mock clock whose sleeps end at once, moving the mock
// forward by their length: the schedule is real, the waiting is not.
type instantClock struct{ *clock.Mock }

func (c instantClock) Timer(d time.Duration) *clock.Timer {
	t := c.Mock.Timer(d)
	c.Add(d)
	return t
}

// The retry schedule, run on a mock clock: /auth/token answers 502 three
// times, and the source sleeps 2, 4 and 8 s before it gets a token.
func ExampleRetryConfig() {
	mock := instantClock{clock.NewMock()}
	colony := colonyauthtest.NewServer(colonyauthtest.WithClock(mock.Mock))
	defer colony.Close()
	colony.FailNext(3, http.StatusBadGateway, 0)

	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == slog.LevelKey {
				return slog.Attr{} // keep the output stable
			}
			return a
		},
	}))
	src := colonyauth.New(colony.APIKey,
		colonyauth.WithBaseURL(colony.URL),
		colonyauth.WithClock(mock),
		colonyauth.WithLogger(logger),
	)
	start := mock.Now()
	if _, err := src.Token(); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("token after", mock.Since(start))
	fmt.Println("budget if it had kept failing:", colonyauth.DefaultRetry().Budget())
	// Output:
	// msg="colonyauth: token exchange failed, retrying" attempt=1 status=502 error="Bad Gateway" delay=2s
	// msg="colonyauth: token exchange failed, retrying" attempt=2 status=502 error="Bad Gateway" delay=4s
	// msg="colonyauth: token exchange failed, retrying" attempt=3 status=502 error="Bad Gateway" delay=8s
	// token after 14s
	// budget if it had kept failing: 2m2s
}

// Errors are *colonyauth.Error values; errors.Is tells the cause and the
// message says what to do.
func ExampleError() {
	colony := colonyauthtest.NewServer()
	defer colony.Close()

	_, err := colonyauth.New("col_not-a-real-key", colonyauth.WithBaseURL(colony.URL)).Token()
	fmt.Println(errors.Is(err, colonyauth.ErrInvalidKey))
	var e *colonyauth.Error
	if errors.As(err, &e) {
		fmt.Println(e.StatusCode, e.Code, e.Attempts)
	}
	fmt.Println(err)
	// Output:
	// true
	// 401 AUTH_INVALID_KEY 1
	// colonyauth: api key rejected (status 401 Unauthorized, code AUTH_INVALID_KEY, 1 attempt, nothing will be sent for 30s): Invalid API key; check that the key belongs to this base URL; if it was revoked or rotated, create a new key (retrying will not help)
}

// NewClient is oauth2.NewClient plus a per-request token wait and one retry
// after a 401: here the server revokes every token between two requests.
func ExampleNewClient() {
	colony := colonyauthtest.NewServer()
	defer colony.Close()

	src := colonyauth.New(colony.APIKey, colonyauth.WithBaseURL(colony.URL))
	client := colonyauth.NewClient(context.Background(), src)
	for range 2 {
		resp, err := client.Get(colony.URL + "/users/me")
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.Status)
		colony.RevokeAll()
	}
	fmt.Println("exchanges:", colony.Exchanges())
	// Output:
	// 200 OK
	// 200 OK
	// exchanges: 2
}

// currentCode stands for a TOTP library computing the code of the moment.
func currentCode() (string, error) { return "123456", nil }

// Accounts with two-factor authentication pass a function that returns the
// current code; it is called for every exchange attempt.
func ExampleWithTOTP() {
	colony := colonyauthtest.NewServer()
	defer colony.Close()
	colony.RequireTOTP("123456")

	src := colonyauth.New(colony.APIKey, colonyauth.WithBaseURL(colony.URL),
		colonyauth.WithTOTP(func() (string, error) {
			return currentCode() // e.g. from a TOTP library and the account's secret
		}))
	_, err := src.Token()
	fmt.Println(err)
	// Output: <nil>
}

// The agents of a host share one cache directory: they share the token of a
// key (one exchange between them, across processes too), the hour's budget
// of /auth/token, and one prober during an outage.
func ExampleWithFileCache() {
	colony := colonyauthtest.NewServer()
	defer colony.Close()
	apiKey, baseURL := colony.APIKey, colony.URL
	dir, err := os.MkdirTemp("", "colonyauth-example") // in production: "", the user cache directory
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	var tokens []string
	for range 3 { // three agents, or three runs of one
		src := colonyauth.New(apiKey, colonyauth.WithBaseURL(baseURL), colonyauth.WithFileCache(dir))
		tok, err := src.Token()
		if err != nil {
			fmt.Println(err)
			return
		}
		tokens = append(tokens, tok.AccessToken)
	}
	fmt.Println(tokens[0] == tokens[1] && tokens[1] == tokens[2], colony.Exchanges())
	// Output: true 1
}
