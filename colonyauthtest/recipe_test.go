package colonyauthtest_test

// The README's "Testing code that uses colonyauth" recipe, as it is there;
// TestReadmeRecipe (in the root package) keeps the two the same.

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth"
	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// fetchMe is the code under test: it takes any oauth2.TokenSource.
func fetchMe(ctx context.Context, ts oauth2.TokenSource, baseURL string) (int, error) {
	resp, err := oauth2.NewClient(ctx, ts).Get(baseURL + "/users/me")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestFetchMeRidesThroughAnOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) { // fake time: the retries' sleeps take none
		colony := colonyauthtest.NewUnstarted() // served in memory, at https://colony.test/api/v1
		colony.FailNext(3, http.StatusBadGateway, 0)
		// One client for both: /auth/token (WithContext) and the API (ctx).
		ctx := context.WithValue(t.Context(), oauth2.HTTPClient, colony.Client())
		src := colonyauth.New(colony.APIKey, colonyauth.WithBaseURL(colony.URL), colonyauth.WithContext(ctx))

		start := time.Now()
		status, err := fetchMe(ctx, src, colony.URL)
		if err != nil || status != http.StatusOK {
			t.Fatalf("fetchMe = %d, %v", status, err)
		}
		if waited := time.Since(start); waited != 14*time.Second { // retries after 2, 4, 8 s
			t.Errorf("waited %v, want 14s", waited)
		}
		if n := colony.Exchanges(); n != 4 {
			t.Errorf("%d exchanges, want 4", n)
		}
	})
}
