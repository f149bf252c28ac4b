package redisledger_test

import (
	"cmp"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/thecolonycc/colonyauth"
	"github.com/thecolonycc/colonyauth/colonyauthtest"
	"github.com/thecolonycc/colonyauth/redisledger"
)

// Agents on several machines share one Redis: their sources share the
// address's budget of /auth/token, one prober during an outage, and one
// exchange per key. (The fake Colony stands in for https://thecolony.ai.)
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
	// Output: exchanges: 1
}
