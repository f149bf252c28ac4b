package colonyauth

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadmeExamples keeps the README honest: every line of its Go blocks
// must stand in a runnable example (the production line that reads the key
// from the environment is the one exception: the example reads the fake's).
func TestReadmeExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	var examples strings.Builder
	for _, f := range []string{"example_test.go", "colonyauthtest/example_test.go"} {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		examples.Write(data)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	require.NotEmpty(t, blocks)
	for _, b := range blocks {
		for _, line := range strings.Split(b[1], "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.Contains(line, `os.Getenv("COLONY_API_KEY")`) {
				continue
			}
			assert.Contains(t, examples.String(), line, "README line not found in any example")
		}
	}
}
