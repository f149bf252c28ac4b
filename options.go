package colonyauth

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"github.com/benbjohnson/clock"
	"golang.org/x/oauth2"
)

// Option configures a TokenSource. Options are checked when the source is
// first used: an invalid one makes every call return an *Error.
type Option func(*options)

type options struct {
	baseURL   string
	client    *http.Client
	clock     clock.Clock
	retry     RetryConfig
	ctx       context.Context
	logger    *slog.Logger
	totp      func() (string, error)
	cache     Cache
	hostLimit int
	err       error // the first invalid option
}

func (o *options) fail(format string, args ...any) {
	if o.err == nil {
		o.err = configError(nil, format, args...)
	}
}

// WithBaseURL sets the Colony API base URL (default DefaultBaseURL). It must
// be https, or http on a loopback address for tests.
func WithBaseURL(u string) Option { return func(o *options) { o.baseURL = u } }

// WithHTTPClient sets the client used for /auth/token. The source uses a
// copy that never follows redirects, so the key cannot leave the host.
// Default: the oauth2.HTTPClient value of the WithContext context, else a
// private client with a 30 s timeout.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) {
		if c == nil {
			o.fail("invalid option: WithHTTPClient(nil)")
			return
		}
		o.client = c
	}
}

// WithClock sets the clock used for expiry, backoff sleeps and cool-downs.
// Tests pass a *clock.Mock to control the schedule exactly.
func WithClock(c clock.Clock) Option {
	return func(o *options) {
		if c == nil {
			o.fail("invalid option: WithClock(nil)")
			return
		}
		o.clock = c
	}
}

// WithRetry sets the backoff schedule of an exchange made while the source
// has no valid token (default DefaultRetry). RetryConfig{} makes a single
// attempt.
func WithRetry(r RetryConfig) Option {
	return func(o *options) {
		r.RetryOn = slices.Clone(r.RetryOn) // the caller may reuse its slice
		o.retry = r
	}
}

// WithContext sets the context that Token runs under and exchanges run
// under (default context.Background()). Cancelling it stops the source's
// exchanges; its oauth2.HTTPClient value, if any, is the HTTP client.
func WithContext(ctx context.Context) Option {
	return func(o *options) {
		if ctx == nil {
			o.fail("invalid option: WithContext(nil)")
			return
		}
		o.ctx = ctx
	}
}

// WithLogger logs each retry at Warn and each new token at Debug. Without
// it the source is silent. Keys and tokens are never logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// tokenClient picks the /auth/token client (WithHTTPClient, else the
// context's oauth2.HTTPClient, else a private one) and returns a copy that
// does not follow redirects.
func tokenClient(o options) *http.Client {
	c := o.client
	if c == nil {
		if hc, ok := o.ctx.Value(oauth2.HTTPClient).(*http.Client); ok && hc != nil {
			c = hc
		}
	}
	if c == nil {
		c = &http.Client{Timeout: attemptTimeout}
	}
	cp := *c
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

func checkKey(k string) error {
	switch {
	case k == "":
		return configError(ErrInvalidKey, "the api key is empty")
	case strings.TrimSpace(k) != k:
		return configError(ErrInvalidKey, "the api key has leading or trailing whitespace (a newline read from a file?)")
	case strings.IndexFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return configError(ErrInvalidKey, "the api key contains whitespace or control characters")
	case strings.HasPrefix(k, "eyJ"):
		return configError(ErrInvalidKey, "this looks like an access token (a JWT), not an api key")
	}
	return nil
}

func (r redactor) checkBaseURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return configError(nil, "invalid base URL %q: want an absolute URL such as %s", r.text(raw), DefaultBaseURL)
	}
	var problem string
	switch {
	case u.User != nil:
		problem = "it must not carry credentials"
	case u.RawQuery != "" || u.Fragment != "":
		problem = "it must not have a query or fragment"
	case u.Scheme == "https", u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	case u.Scheme == "http":
		problem = "plain http would expose the api key; use https (http is allowed only on loopback)"
	default:
		problem = "scheme must be https"
	}
	return configError(nil, "invalid base URL %q: %s", r.text(u.Redacted()), problem)
}

// isLoopback reports whether host is a loopback IP literal or exactly
// "localhost" (B26). Other names, x.localhost included, are resolved by DNS
// and may lead anywhere, so plain http to them would expose the key.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
