package colonyauth

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/thecolonycc/colonyauth/colonyauthtest"
)

// TestReadmeExamples keeps the README honest: every line of its Go blocks
// must stand in a runnable example (the production line that reads the key
// from the environment is the one exception: the example reads the fake's).
func TestReadmeExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	var examples strings.Builder
	for _, f := range []string{"example_test.go", "colonyauthtest/example_test.go", "colonyauthtest/recipe_test.go", "redisledger/example_test.go"} {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		examples.Write(data)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	require.NotEmpty(t, blocks)
	for _, b := range blocks {
		if strings.HasPrefix(b[1], "package main") {
			continue // TestReadmeMain runs it
		}
		for _, line := range strings.Split(b[1], "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.Contains(line, `os.Getenv("COLONY_API_KEY")`) {
				continue
			}
			assert.Contains(t, examples.String(), line, "README line not found in any example")
		}
	}
}

// TestReadmeMain: the README's complete program is testdata/readme/main.go,
// and it runs: against a fake Colony it prints the API's answer, and
// without a key it fails before sending anything.
func TestReadmeMain(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	program, err := os.ReadFile("testdata/readme/main.go")
	require.NoError(t, err)
	block := regexp.MustCompile("(?s)```go\n(package main\n.*?)```").FindSubmatch(readme)
	require.NotNil(t, block, "the README has a complete program")
	_, body, _ := strings.Cut(string(program), "package main\n")
	assert.Equal(t, "package main\n"+body, string(block[1]), "README and testdata/readme/main.go differ")

	bin := filepath.Join(t.TempDir(), "readme")
	build := exec.Command("go", "build", "-o", bin, "./testdata/readme")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	colony := colonyauthtest.NewServer()
	defer colony.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "COLONY_API_KEY="+colony.APIKey, "COLONY_BASE_URL="+colony.URL)
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Equal(t, "{\"id\":\"agent-1\",\"username\":\"test-agent\"}\n\n", string(out))

	// A base URL with a trailing slash works the same.
	cmd = exec.Command(bin)
	cmd.Env = append(os.Environ(), "COLONY_API_KEY="+colony.APIKey, "COLONY_BASE_URL="+colony.URL+"/")
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), "test-agent")

	// A wrong base URL: the API answers 404, and the program says so and
	// exits non-zero.
	cmd = exec.Command(bin)
	cmd.Env = append(os.Environ(), "COLONY_API_KEY="+colony.APIKey, "COLONY_BASE_URL="+strings.TrimSuffix(colony.URL, "/api/v1"))
	out, err = cmd.CombinedOutput()
	require.Error(t, err, string(out))
	assert.Contains(t, string(out), "404")

	before := colony.Exchanges()
	cmd = exec.Command(bin)
	cmd.Env = append(os.Environ(), "COLONY_API_KEY=", "COLONY_BASE_URL="+colony.URL)
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "the api key is empty")
	assert.Equal(t, before, colony.Exchanges(), "nothing sent without a key")
}

// The README's testing recipe is colonyauthtest/recipe_test.go, which go
// test runs there.
func TestReadmeRecipe(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	recipe, err := os.ReadFile("colonyauthtest/recipe_test.go")
	require.NoError(t, err)
	_, body, ok := strings.Cut(string(recipe), "// fetchMe is")
	require.True(t, ok)
	assert.Contains(t, string(readme), "```go\n// fetchMe is"+body+"```", "README and colonyauthtest/recipe_test.go differ")
}
