package colonyauth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// NewClient returns an HTTP client that authenticates every request with a
// token from src. It is oauth2.NewClient(ctx, src) with three differences
// that matter during an outage and against a hostile redirect:
//
//   - each request's own context bounds its wait for a token, so a request
//     with a 3 s deadline fails after 3 s, not after the retry budget (when
//     src has a TokenContext(ctx) method, as a *TokenSource does);
//   - a 401 from the API (a revoked or expired token) invalidates the token
//     and the request is sent once more with a new one, if its body can be
//     replayed (http.Request.GetBody; requests without a body always can)
//     and src has an Invalidate(*oauth2.Token) method;
//   - with a *TokenSource, the token is attached only to requests for its
//     base URL's scheme and host: any other request, a redirect to another
//     host included, fails with an error naming the host and carries no
//     token.
//
// Any oauth2.TokenSource works, a static one in tests included. API errors
// such as 5xx are returned as they are, never retried. As with
// oauth2.NewClient, an *http.Client in ctx under oauth2.HTTPClient supplies
// the base transport, redirect policy, cookie jar and timeout.
func NewClient(ctx context.Context, src oauth2.TokenSource) *http.Client {
	base := http.DefaultClient
	if ctx != nil {
		if hc, ok := ctx.Value(oauth2.HTTPClient).(*http.Client); ok && hc != nil {
			base = hc
		}
	}
	t := &transport{source: src, base: base.Transport}
	if s, ok := src.(*TokenSource); ok && s != nil {
		if u, err := url.Parse(s.baseURL); err == nil {
			t.scheme, t.host = u.Scheme, strings.ToLower(u.Host)
		}
	}
	return &http.Client{
		Transport:     t,
		CheckRedirect: base.CheckRedirect,
		Jar:           base.Jar,
		Timeout:       base.Timeout,
	}
}

// contextSource and invalidator are the optional methods NewClient uses.
type (
	contextSource interface {
		TokenContext(context.Context) (*oauth2.Token, error)
	}
	invalidator interface{ Invalidate(*oauth2.Token) }
)

// transport adds the bearer token and retries once after a 401.
type transport struct {
	source       oauth2.TokenSource
	base         http.RoundTripper // nil = http.DefaultTransport
	scheme, host string            // where tokens may go; "" = anywhere
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := t.base
	if rt == nil {
		rt = http.DefaultTransport
	}
	if err := t.allowed(req); err != nil {
		closeBody(req)
		return nil, err
	}
	ctx := req.Context()
	tok, err := t.token(ctx)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := rt.RoundTrip(authorized(ctx, req, tok, req.Body))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	inv, ok := t.source.(invalidator)
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	if !ok || !replayable {
		return resp, nil
	}
	inv.Invalidate(tok)
	fresh, err := t.token(ctx)
	if err != nil || fresh.AccessToken == tok.AccessToken {
		return resp, nil // no better token: the API's 401 is the answer
	}
	body := req.Body
	if req.GetBody != nil {
		if body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // let the connection be reused
	resp.Body.Close()
	return rt.RoundTrip(authorized(ctx, req, fresh, body))
}

// allowed refuses a request that would carry the token off the source's
// base URL (B29).
func (t *transport) allowed(req *http.Request) error {
	if t.host == "" || req.URL == nil {
		return nil
	}
	if req.URL.Scheme == t.scheme && strings.ToLower(req.URL.Host) == t.host {
		return nil
	}
	where := fmt.Sprintf("%s://%s", req.URL.Scheme, req.URL.Host)
	return &Error{Message: fmt.Sprintf("refusing to send the Colony token to %q: this client authenticates only requests to %s://%s, the source's base URL (a redirect to another host?)", where, t.scheme, t.host)}
}

func (t *transport) token(ctx context.Context) (*oauth2.Token, error) {
	if t.source == nil {
		return nil, configError(nil, "NewClient was given a nil TokenSource")
	}
	if cs, ok := t.source.(contextSource); ok {
		return cs.TokenContext(ctx)
	}
	return t.source.Token()
}

// authorized clones req, never modifying the caller's request, with body and
// the token's Authorization header.
func authorized(ctx context.Context, req *http.Request, tok *oauth2.Token, body io.ReadCloser) *http.Request {
	r := req.Clone(ctx)
	r.Body = body
	tok.SetAuthHeader(r)
	return r
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
