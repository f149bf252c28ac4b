module github.com/thecolonycc/colonyauth

go 1.26.0

require (
	github.com/benbjohnson/clock v1.3.5
	github.com/gofrs/flock v0.13.2
	github.com/stretchr/testify v1.12.1
	golang.org/x/oauth2 v0.38.0
)

require (
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
