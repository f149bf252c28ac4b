// Command readme is the README's "Use" program; TestReadmeMain runs it.
package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"golang.org/x/oauth2"

	"github.com/thecolonycc/colonyauth"
)

func main() {
	baseURL := cmp.Or(os.Getenv("COLONY_BASE_URL"), colonyauth.DefaultBaseURL)
	src := colonyauth.New(os.Getenv("COLONY_API_KEY"), colonyauth.WithBaseURL(baseURL))
	if err := src.Check(); err != nil {
		log.Fatal(err) // no key, or a malformed one: nothing was sent
	}
	client := oauth2.NewClient(context.Background(), src)
	resp, err := client.Get(baseURL + "/users/me")
	if err != nil {
		log.Fatal(err) // e.g. "colonyauth: /auth/token unavailable (…); try again after RetryAfter"
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status, string(body))
}
