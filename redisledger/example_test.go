package redisledger_test

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/thecolonycc/colonyauth"
	"github.com/thecolonycc/colonyauth/colonyauthtest"
	"github.com/thecolonycc/colonyauth/redisledger"
)

// Agents on several machines share one Redis: their sources share the
// address's budget of /auth/token, one prober during an outage, and one
// exchange per key. (The fake Colony stands in for https://thecolony.ai.)
// It prints "exchanges: 1". The example is compiled but not run by go test,
// as it needs a Redis; TestExample runs it against the one of .ci/run.
func Example() {
	colony := colonyauthtest.NewServer()
	defer colony.Close()
	apiKey, baseURL := colony.APIKey, colony.URL

	rdb := redis.NewClient(&redis.Options{Addr: cmp.Or(os.Getenv("REDIS_ADDR"), "127.0.0.1:6379")})
	defer rdb.Close()
	store := redisledger.New(rdb, redisledger.WithPrefix("colonyauth-example:"))

	for range 3 { // three agents with the same key, on any machines
		src := colonyauth.New(apiKey, colonyauth.WithBaseURL(baseURL), colonyauth.WithCache(store))
		if _, err := src.Token(); err != nil {
			fmt.Println(err)
			return
		}
	}
	fmt.Println("exchanges:", colony.Exchanges())
}

// TestExample runs Example, which go test cannot run without a Redis,
// against $REDIS_ADDR, and checks what it prints.
func TestExample(t *testing.T) {
	redisledger.RequireRedis(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	Example()
	os.Stdout = stdout
	w.Close()
	out, _ := io.ReadAll(r)
	if string(out) != "exchanges: 1\n" {
		t.Errorf("Example printed %q, want %q", out, "exchanges: 1\n")
	}
}
