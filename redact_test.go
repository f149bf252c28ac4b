package colonyauth

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

// jsonEscape is s as it appears inside a JSON string written by Go.
func jsonEscape(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// asciiJSON escapes every non-ASCII rune of a JSON string's content as
// \uXXXX (upper-case hex when upper), as Python's json.dumps does.
func asciiJSON(s string, upper bool) string {
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf {
			b.WriteRune(r)
			continue
		}
		for _, u := range utf16Units(r) {
			f := `\u%04x`
			if upper {
				f = `\u%04X`
			}
			fmt.Fprintf(&b, f, u)
		}
	}
	return b.String()
}

// pythonJSON is s inside a JSON string written by Python's json.dumps:
// ASCII only, '<' and '/' as they are.
func pythonJSON(s string) string {
	return asciiJSON(strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(jsonEscape(s)), false)
}

// echoForms are the ways a server may echo text, each with its decoder.
var echoForms = []struct {
	name   string
	encode func(string) string
	decode func(string) string
}{
	{"raw", func(s string) string { return s }, nil},
	{"go json", jsonEscape, jsonDecode},
	{"python json", pythonJSON, jsonDecode},
	{"json with \\/", func(s string) string { return strings.ReplaceAll(jsonEscape(s), "/", `\/`) }, jsonDecode},
	{"json upper-case hex", func(s string) string { return asciiJSON(jsonEscape(s), true) }, jsonDecode},
	{"query", url.QueryEscape, queryDecode},
	{"query lower-case hex", func(s string) string { return lowerHex(url.QueryEscape(s)) }, queryDecode},
	{"path", url.PathEscape, queryDecode},
	{"broken across lines", func(s string) string { r := []rune(s); return string(r[:9]) + "\n  " + string(r[9:]) }, nil},
	{"json broken across lines", func(s string) string {
		r := []rune(s)
		return jsonEscape(string(r[:10])) + `\n` + jsonEscape(string(r[10:]))
	}, jsonDecode},
}

func jsonDecode(s string) string {
	var out string
	if json.Unmarshal([]byte(`"`+s+`"`), &out) != nil {
		return s
	}
	return out
}

func queryDecode(s string) string {
	out, err := url.QueryUnescape(s)
	if err != nil {
		return s
	}
	return out
}

// lowerHex turns the hex digits of every %XX to lower case.
func lowerHex(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = strings.ToLower(string(b[i+1]))[0], strings.ToLower(string(b[i+2]))[0]
		}
	}
	return string(b)
}

// survivor returns a run of 8 consecutive characters of key found in out
// (or in out decoded), or "".
func survivor(key, out string, decode func(string) string) string {
	texts := []string{out, strings.NewReplacer("\n", "", "\r", "", " ", "", `\n`, "").Replace(out)}
	if decode != nil {
		texts = append(texts, decode(out), decode(texts[1]))
	}
	r := []rune(key)
	for i := 0; i+8 <= len(r); i++ {
		for _, text := range texts {
			if w := string(r[i : i+8]); strings.Contains(text, w) {
				return w
			}
		}
	}
	return ""
}

// B28: an echo of the key is removed to its end in every form, whatever
// characters the key has past its 8th (/, +, =, %, <, non-ASCII), whether
// it is the whole key or only its first 8 to 11 characters, and for keys
// that are not col_-shaped (so no pattern catches them).
func TestRedactionToTheEnd(t *testing.T) {
	keys := []string{
		"Secr3tKey/with+slash=and%percent<angle",
		"plainKEY_é_ünïcode_tail_x9",
		"ABCDEFGH<IJK/LMN+OPQ=RST%UVW",
		"k8chars!/€/𝄞-and-more-after-the-clef",
		"col_AbCdEfGh/Ij+Kl=Mn%Op<Qr",
	}
	for _, key := range keys {
		red := redactor{}.with(key)
		for _, form := range echoForms {
			for _, n := range []int{8, 9, 10, 11, utf8.RuneCountInString(key)} {
				echo := string([]rune(key)[:n])
				if form.name == "broken across lines" || form.name == "json broken across lines" {
					if n < 12 {
						continue
					}
				}
				in := "invalid api key " + form.encode(echo) + " given"
				out := red.text(in)
				assert.Empty(t, survivor(key, out, form.decode), "key %q, %s echo of %d characters: %q", key, form.name, n, out)
				assert.Contains(t, out, "invalid api key ", "the text around the echo stays")
				assert.Contains(t, out, " given", "the text after the echo stays")
			}
		}
	}
}

// B28: fewer than 8 characters are no echo, and redaction keeps the rest.
func TestRedactionLeavesShortRuns(t *testing.T) {
	red := redactor{}.with("Abcdefgh/ijkl")
	assert.Equal(t, "Abcdefg is not it", red.text("Abcdefg is not it"), "7 characters are no echo")
	assert.Equal(t, "x [REDACTED] y", red.text("x Abcdefgh y"), "8 are")
	assert.Equal(t, "x [REDACTED]Z y", red.text(`x Abcdefgh\/ijZ y`), "the echo ends where the key stops")
}
