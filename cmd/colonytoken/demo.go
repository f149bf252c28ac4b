package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth"
	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

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
