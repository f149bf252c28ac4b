package colonyauth

import (
	"context"
	"io"
	"net/http"

	"golang.org/x/oauth2"
)

// NewClient returns an HTTP client that authenticates every request with a
// token from s. It is oauth2.NewClient(ctx, s) with two differences that
// matter during an outage:
//
//   - each request's own context bounds its wait for a token, so a request
//     with a 3 s deadline fails after 3 s, not after the retry budget;
//   - a 401 from the API (a revoked or expired token) invalidates the token
//     and the request is sent once more with a new one, if its body can be
//     replayed (http.Request.GetBody; requests without a body always can).
//
// API errors such as 5xx are returned as they are, never retried. As with
// oauth2.NewClient, an *http.Client in ctx under oauth2.HTTPClient supplies
// the base transport, redirect policy, cookie jar and timeout.
func NewClient(ctx context.Context, s *TokenSource) *http.Client {
	base := http.DefaultClient
	if ctx != nil {
		if hc, ok := ctx.Value(oauth2.HTTPClient).(*http.Client); ok && hc != nil {
			base = hc
		}
	}
	return &http.Client{
		Transport:     &transport{source: s, base: base.Transport},
		CheckRedirect: base.CheckRedirect,
		Jar:           base.Jar,
		Timeout:       base.Timeout,
	}
}

// transport adds the bearer token and retries once after a 401.
type transport struct {
	source *TokenSource
	base   http.RoundTripper // nil = http.DefaultTransport
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := t.base
	if rt == nil {
		rt = http.DefaultTransport
	}
	ctx := req.Context()
	tok, err := t.source.TokenContext(ctx)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := rt.RoundTrip(authorized(ctx, req, tok, req.Body))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	if !replayable {
		return resp, nil
	}
	t.source.Invalidate(tok)
	fresh, err := t.source.TokenContext(ctx)
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
