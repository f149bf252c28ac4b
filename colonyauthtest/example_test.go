package colonyauthtest_test

import (
	"context"
	"fmt"
	"net/http"

	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth"
	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// whoAmI is the code under test: it takes any oauth2.TokenSource.
func whoAmI(ctx context.Context, ts oauth2.TokenSource, baseURL string) (int, error) {
	resp, err := oauth2.NewClient(ctx, ts).Get(baseURL + "/users/me")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Point colonyauth.New at the fake Colony, and script its failures: here
// /auth/token answers 503 once and the source retries.
func ExampleNewServer() {
	colony := colonyauthtest.NewServer()
	defer colony.Close()
	colony.FailNext(1, http.StatusServiceUnavailable, 0)

	src := colonyauth.New(colony.APIKey, colonyauth.WithBaseURL(colony.URL),
		colonyauth.WithRetry(colonyauth.RetryConfig{MaxRetries: 1, BaseDelay: 1, MaxDelay: 1}))
	status, err := whoAmI(context.Background(), src, colony.URL)
	fmt.Println(status, err, colony.Exchanges())
	// Output: 200 <nil> 2
}

// Code that takes an oauth2.TokenSource can be tested with no token
// exchange at all: a static token the fake API does not know gets a 401.
func ExampleNewServer_staticTokenSource() {
	colony := colonyauthtest.NewServer()
	defer colony.Close()

	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "not-a-colony-token"})
	status, err := whoAmI(context.Background(), ts, colony.URL)
	fmt.Println(status, err, colony.Exchanges())
	// Output: 401 <nil> 0
}

// NewUnstarted serves in memory, for testing/synctest bubbles: pass its
// Client to colonyauth.WithHTTPClient and, for the API, in the context.
func ExampleNewUnstarted() {
	colony := colonyauthtest.NewUnstarted()
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, colony.Client())

	src := colonyauth.New(colony.APIKey, colonyauth.WithBaseURL(colony.URL), colonyauth.WithContext(ctx))
	status, err := whoAmI(ctx, src, colony.URL)
	fmt.Println(status, err)
	// Output: 200 <nil>
}
