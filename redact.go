package colonyauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// redactor removes secrets from text that came from outside: server
// messages, response bodies and headers, transport and WithTOTP errors
// (B14, B28). It knows the source's key and, where one is at hand, a token;
// anything shaped like a JWT or a Colony key is removed even when it is not
// ours.
type redactor struct{ secrets []string }

// jwtLike matches a JWT or its start; colKey matches anything shaped like a
// Colony API key.
var (
	jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]*){0,2}`)
	colKey  = regexp.MustCompile(`col_[A-Za-z0-9_\-]+`)
)

const redacted = "[REDACTED]"

// echoPrefix is how many leading characters of a secret make an echo of it.
const echoPrefix = 8

// with returns a redactor that also removes secret.
func (r redactor) with(secret string) redactor {
	if secret == "" {
		return r
	}
	return redactor{secrets: append(r.secrets[:len(r.secrets):len(r.secrets)], secret)}
}

func (r redactor) text(s string) string {
	for _, secret := range r.secrets {
		for _, enc := range encodings {
			s = redactEchoes(s, enc(secret), enc(runePrefix(secret, echoPrefix)))
		}
	}
	s = jwtLike.ReplaceAllString(s, redacted)
	return colKey.ReplaceAllString(s, redacted)
}

// message trims a server message to one readable line of at most 200 bytes.
func (r redactor) message(s string) string {
	s = strings.Join(strings.Fields(r.text(s)), " ")
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return s
}

// header returns a copy of h with every value redacted.
func (r redactor) header(h http.Header) http.Header {
	if h == nil {
		return nil
	}
	out := make(http.Header, len(h))
	for k, vs := range h {
		clean := make([]string, len(vs))
		for i, v := range vs {
			clean[i] = r.text(v)
		}
		out[k] = clean
	}
	return out
}

// wrap returns err with its text redacted; errors.Is and errors.As still
// reach err itself.
func (r redactor) wrap(err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: r.text(err.Error()), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// encodings are the forms in which a server may echo a secret: as it is,
// JSON-escaped (Go's \u003c style, Python's ASCII-only style, and with \/),
// and URL-encoded.
var encodings = []func(string) string{
	func(s string) string { return s },
	jsonEscape,
	func(s string) string { return asciiJSON(jsonEscape(s)) },
	func(s string) string { return strings.ReplaceAll(jsonEscape(s), "/", `\/`) },
	url.QueryEscape,
	url.PathEscape,
}

// jsonEscape is s as it appears inside a JSON string written by Go.
func jsonEscape(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b[1 : len(b)-1])
}

// asciiJSON escapes every non-ASCII rune of a JSON string's content as
// \uXXXX, as Python's json.dumps does by default.
func asciiJSON(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf {
			b.WriteRune(r)
			continue
		}
		for _, u := range utf16Units(r) {
			b.WriteString(`\u`)
			b.WriteString(strings.ToLower(hex4(u)))
		}
	}
	return b.String()
}

func utf16Units(r rune) []uint16 {
	if r < 0x10000 {
		return []uint16{uint16(r)}
	}
	r -= 0x10000
	return []uint16{uint16(0xd800 + (r >> 10)), uint16(0xdc00 + (r & 0x3ff))}
}

func hex4(u uint16) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[u>>12], digits[u>>8&15], digits[u>>4&15], digits[u&15]})
}

// runePrefix returns the first n runes of s.
func runePrefix(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// redactEchoes replaces every run of s that starts with prefix and goes on
// as full does (an echo of at least the prefix of a secret) by [REDACTED].
func redactEchoes(s, full, prefix string) string {
	if prefix == "" || !strings.Contains(s, prefix) {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, prefix)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		n := len(prefix)
		for n < len(full) && i+n < len(s) && s[i+n] == full[n] {
			n++
		}
		b.WriteString(s[:i])
		b.WriteString(redacted)
		s = s[i+n:]
	}
}
