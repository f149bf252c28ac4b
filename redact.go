package colonyauth

import (
	"net/http"
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
		s = redactEchoes(s, []rune(secret))
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

// redactEchoes replaces by [REDACTED] every echo in s of at least the
// first echoPrefix characters of secret, to the echo's end (B28). An echo
// is found in whatever form a server may write it, character by character
// (see echoEnd), so an echo that changes form midway (a '/' escaped as \/
// past the 8th character, a non-ASCII character as \u00e9 or %C3%A9) is
// still removed whole.
func redactEchoes(s string, secret []rune) string {
	if len(secret) == 0 {
		return s
	}
	first := string(secret[0])[0]
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != first && c != '\\' && c != '%' {
			continue
		}
		if end := echoEnd(s, i, secret); end > 0 {
			b.WriteString(s[last:i])
			b.WriteString(redacted)
			last, i = end, end-1
		}
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// echoEnd returns where an echo of secret that starts at s[i] ends, or -1
// if fewer than echoPrefix of its characters (all of a shorter secret)
// are echoed there. Each character may be written as it is, JSON-escaped
// (\uXXXX in either case of hex, a surrogate pair, \/ \" \\), or
// URL-encoded (%XX in either case of hex, per UTF-8 byte); between two
// characters the echo may be broken across lines (a newline, raw or
// escaped, and the next line's indentation).
func echoEnd(s string, i int, secret []rune) int {
	p, n := i, 0
	for _, r := range secret {
		q := p
		if n > 0 {
			q = skipBreak(s, q)
		}
		w := runeAt(s, q, r)
		if w == 0 && q != p {
			w, q = runeAt(s, p, r), p
		}
		if w == 0 {
			break
		}
		p, n = q+w, n+1
	}
	if n < min(echoPrefix, len(secret)) {
		return -1
	}
	return p
}

// skipBreak skips a line break at s[p:] (CR, LF, or their JSON escapes)
// and the spaces or tabs after it.
func skipBreak(s string, p int) int {
	q := p
	for q < len(s) {
		switch {
		case s[q] == '\r' || s[q] == '\n':
			q++
		case strings.HasPrefix(s[q:], `\r`) || strings.HasPrefix(s[q:], `\n`):
			q += 2
		default:
			if q == p {
				return p
			}
			for q < len(s) && (s[q] == ' ' || s[q] == '\t') {
				q++
			}
			return q
		}
	}
	return q
}

// runeAt returns the length of r written at s[p:] in one of the forms of
// echoEnd, or 0 if it is not there.
func runeAt(s string, p int, r rune) int {
	t := s[p:]
	var enc [utf8.UTFMax]byte
	raw := enc[:utf8.EncodeRune(enc[:], r)]
	if w := encodedAt(t, r, raw); w > 0 { // first: a raw '%' or '\\' may also start an encoded one
		return w
	}
	if strings.HasPrefix(t, string(raw)) {
		return len(raw)
	}
	return 0
}

// encodedAt is runeAt for the encoded forms of r (raw is its UTF-8).
func encodedAt(t string, r rune, raw []byte) int {
	if len(t) < 2 {
		return 0
	}
	switch {
	case t[0] == '%': // URL-encoded, byte by byte
		k := 0
		for _, c := range raw {
			if len(t) < k+3 || t[k] != '%' || !hexByte(t[k+1:k+3], c) {
				return 0
			}
			k += 3
		}
		return k
	case t[0] != '\\':
		return 0
	case t[1] == byte(r) && (r == '/' || r == '"' || r == '\\'):
		return 2
	}
	units := utf16Units(r)
	k := 0
	for _, u := range units {
		if len(t) < k+6 || t[k] != '\\' || t[k+1] != 'u' || !hexUnit(t[k+2:k+6], u) {
			return 0
		}
		k += 6
	}
	return k
}

// hexByte reports whether h (two hex digits, either case) is c.
func hexByte(h string, c byte) bool {
	v, ok := hexValue(h)
	return ok && v == uint32(c)
}

// hexUnit reports whether h (four hex digits, either case) is u.
func hexUnit(h string, u uint16) bool {
	v, ok := hexValue(h)
	return ok && v == uint32(u)
}

func hexValue(h string) (uint32, bool) {
	var v uint32
	for i := 0; i < len(h); i++ {
		c := h[i] | 0x20 // lower case
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint32(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint32(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

func utf16Units(r rune) []uint16 {
	if r < 0x10000 {
		return []uint16{uint16(r)}
	}
	r -= 0x10000
	return []uint16{uint16(0xd800 + (r >> 10)), uint16(0xdc00 + (r & 0x3ff))}
}
