package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpapi"
	"github.com/p2sp/p2sp/internal/httpclient"
)

const (
	// relayTimeout bounds one relayed call to the origin.
	relayTimeout = 15 * time.Second
	// maxRelayBody bounds a relayed request body; the origin has its own
	// (smaller) bound.
	maxRelayBody = 1 << 20
	// maxRelayAnswer bounds the origin's answer to a relayed call, read
	// whole before it is passed on: a catalog page of the most entries the
	// origin gives at once (1000) with long paths, or a user's lists.
	maxRelayAnswer = 8 << 20
)

// relayCatalog answers GET /v1/catalog with the origin's, query and all,
// so the page needs no access to the origin.
func (s *Server) relayCatalog(c *gin.Context) error {
	return s.relay(c, s.listsOrigin()+"/v1/catalog", false)
}

// listsOrigin is the origin the page's catalog and list calls go to: the
// first one listed that is not passed over after a failure. The users'
// lists follow only if the origins share their data directory.
func (s *Server) listsOrigin() string {
	bases, down := s.origin.Bases(), s.origin.Down()
	if i := slices.Index(down, false); i >= 0 {
		return bases[i]
	}
	return bases[0]
}

// checkListCall guards /v1/lists: the lists must be configured, and a call
// that changes them must come from the page itself. A page of another site
// open in the same browser can reach this loopback port too; requiring a
// JSON body (which a cross-site form cannot send without a CORS preflight
// that nothing here answers) and a same-origin Origin header keeps it from
// acting as the user.
func (s *Server) checkListCall(c *gin.Context) error {
	if s.cfg.User == "" {
		return httpapi.Errorf(http.StatusNotFound, "no user configured: start the proxy with --user and --user-token-file")
	}
	if c.Request.Method == http.MethodGet {
		return nil
	}
	if o := c.GetHeader("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != c.Request.Host {
			return httpapi.Errorf(http.StatusForbidden, "cross-origin list call from %q", o)
		}
	}
	if c.Request.Method == http.MethodPost || c.Request.Method == http.MethodPut {
		mt, _, _ := mime.ParseMediaType(c.GetHeader("Content-Type"))
		if mt != "application/json" {
			return httpapi.Errorf(http.StatusUnsupportedMediaType, "want a JSON body (Content-Type: application/json)")
		}
	}
	return nil
}

// relayList passes /v1/lists/{rest} to the origin's
// /v1/users/{user}/{rest} with the user's token.
func (s *Server) relayList(c *gin.Context) error {
	rest := strings.TrimPrefix(c.Request.URL.Path, "/v1/lists")
	if rest != "" {
		// The relay forwards paths, never lets one climb out of the user's
		// lists: "..", "." and empty elements are refused here, in every
		// encoding (the path is already decoded).
		clean, err := fileinfo.CleanPath(rest)
		if err != nil {
			return httpapi.Errorf(http.StatusBadRequest, "bad list path: %w", err)
		}
		rest = "/" + fileinfo.EscapePath(clean)
	}
	return s.relay(c, s.listsOrigin()+"/v1/users/"+url.PathEscape(s.cfg.User)+rest, true)
}

// relay sends the request to target (with the request's query and body)
// and copies the origin's answer back: its status, type and body.
func (s *Server) relay(c *gin.Context, target string, auth bool) error {
	if q := c.Request.URL.RawQuery; q != "" {
		target += "?" + q
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), relayTimeout)
	defer cancel()
	// The body is read here, whole and bounded, so that one too large is
	// the player's 413, not an origin failure.
	var body io.Reader
	if c.Request.ContentLength != 0 && c.Request.Method != http.MethodGet {
		if c.Request.ContentLength > maxRelayBody {
			return httpapi.Errorf(http.StatusRequestEntityTooLarge, "request body over %d bytes", maxRelayBody)
		}
		b, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxRelayBody))
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return httpapi.Errorf(http.StatusRequestEntityTooLarge, "request body over %d bytes", maxRelayBody)
		}
		if err != nil {
			return httpapi.Errorf(http.StatusBadRequest, "read request body: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, c.Request.Method, target, body)
	if err != nil {
		s.log.Error("relay: building the origin request", "err", err)
		return httpapi.Errorf(http.StatusInternalServerError, "relay: cannot build the origin request")
	}
	if ct := c.GetHeader("Content-Type"); ct != "" && body != nil {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Accept", "application/json")
	if auth {
		req.Header.Set("Authorization", "Bearer "+s.cfg.UserToken)
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		// The error names the origin's URL and the user: the log has it,
		// the page gets no internals.
		s.log.Warn("relay to the origin failed", "err", err)
		return httpapi.Errorf(http.StatusBadGateway, "the origin could not be reached")
	}
	defer resp.Body.Close()
	// Read whole, so that an answer too large is a clean 502 for the page
	// rather than a body cut short.
	b, err := httpclient.ReadAll(resp, maxRelayAnswer)
	if err != nil {
		s.log.Warn("relay: the origin's answer", "target", target, "err", err)
		if errors.Is(err, httpclient.ErrTooLarge) {
			return httpapi.Errorf(http.StatusBadGateway, "the origin's answer is over %d bytes", maxRelayAnswer)
		}
		return httpapi.Errorf(http.StatusBadGateway, "the origin's answer could not be read")
	}
	for _, h := range []string{"Content-Type", "X-Total-Count"} {
		if v := resp.Header.Get(h); v != "" {
			c.Header(h, v)
		}
	}
	c.Status(resp.StatusCode)
	c.Writer.Write(b)
	return nil
}
