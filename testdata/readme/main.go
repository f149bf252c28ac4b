// Command readme is the README's "Use" program; TestReadmeMain runs it.
package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/url"
	"os"

	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth"
)

func main() {
	baseURL := cmp.Or(os.Getenv("COLONY_BASE_URL"), colonyauth.DefaultBaseURL)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	src := colonyauth.New(os.Getenv("COLONY_API_KEY"),
		colonyauth.WithBaseURL(baseURL),
		colonyauth.WithLogger(logger)) // each retry of /auth/token at Warn: an outage waits up to 2 minutes
	if err := src.Check(); err != nil {
		log.Fatal(err) // no key, or a malformed one: nothing was sent
	}
	me, err := url.JoinPath(baseURL, "users/me")
	if err != nil {
		log.Fatal(err)
	}
	client := oauth2.NewClient(context.Background(), src)
	resp, err := client.Get(me)
	if err != nil {
		log.Fatal(err) // e.g. "colonyauth: /auth/token unavailable (…); try again in 30s"
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	if resp.StatusCode/100 != 2 {
		log.Fatalf("GET %s: %s %s", me, resp.Status, body)
	}
	fmt.Println(string(body))
}
