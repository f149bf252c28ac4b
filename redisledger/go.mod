module github.com/thecolonycc/colonyauth/redisledger

go 1.26.0

require (
	github.com/benbjohnson/clock v1.3.5
	github.com/redis/go-redis/v9 v9.23.0
	github.com/stretchr/testify v1.12.1
	github.com/thecolonycc/colonyauth v0.1.0
	golang.org/x/oauth2 v0.38.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/gofrs/flock v0.13.2 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

// Work inside the repository uses the root next to it; users get the
// required version (a dependency's replace is ignored). See RELEASING.md.
replace github.com/thecolonycc/colonyauth => ../
