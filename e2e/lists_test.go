package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/origin"
)

// do sends a request with optional headers and body and returns the status
// and body.
func do(t *testing.T, method, url string, header map[string]string, body string) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

var jsonBody = map[string]string{"Content-Type": "application/json"}

// originFavorites reads a user's favourites from the origin itself, as
// "group:path".
func originFavorites(t *testing.T, c *demo.Cluster, user, token string) []string {
	t.Helper()
	status, b := do(t, http.MethodGet, c.Origin.URL+"/v1/users/"+user+"/favorites",
		map[string]string{"Authorization": "Bearer " + token}, "")
	if status != http.StatusOK {
		t.Fatalf("origin favourites: %d %s", status, b)
	}
	var r origin.FavoritesResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, f := range r.Favorites {
		out = append(out, f.Group+":"+f.Path)
	}
	return out
}

// originRecent reads the user's recent plays from the origin itself.
func originRecent(t *testing.T, c *demo.Cluster) []string {
	t.Helper()
	status, b := do(t, http.MethodGet, c.Origin.URL+"/v1/users/"+c.User+"/recent",
		map[string]string{"Authorization": "Bearer " + c.UserToken}, "")
	if status != http.StatusOK {
		t.Fatalf("origin recent: %d %s", status, b)
	}
	var r origin.RecentResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, p := range r.Recent {
		out = append(out, p.Path)
	}
	return out
}

// TestListsThroughProxy: the page's calls, relayed by the proxy with the
// user's credential, change the user's lists on the origin; the lists
// survive an origin restart; another user's token is refused on them; the
// relay refuses calls a foreign web page could forge.
func TestListsThroughProxy(t *testing.T) {
	c := start(t, demo.Config{Proxies: 1, ScanInterval: 200 * time.Millisecond})
	waitInfo(t, c, demo.SampleName, "")
	waitInfo(t, c, demo.ToneName, "")
	p := c.Proxies[0].URL

	// The catalog, relayed: search, type and duration.
	status, b := do(t, http.MethodGet, p+"/v1/catalog?q=TONE", nil, "")
	var cat []origin.CatalogEntry
	if status != http.StatusOK || json.Unmarshal(b, &cat) != nil || len(cat) != 1 {
		t.Fatalf("catalog?q=TONE through the proxy: %d %s", status, b)
	}
	if e := cat[0]; e.Path != demo.ToneName || e.ContentType != "audio/wav" || e.Duration != 8 {
		t.Errorf("tone entry %+v, want audio/wav of 8 s", e)
	}
	status, b = do(t, http.MethodGet, p+"/v1/catalog?q=sample", nil, "")
	if status != http.StatusOK || json.Unmarshal(b, &cat) != nil || len(cat) != 1 || cat[0].Duration < 19.9 || cat[0].Duration > 20.1 {
		t.Fatalf("catalog?q=sample through the proxy: %d %s, want the 20 s sample", status, b)
	}

	steps := []struct {
		name, method, path string
		header             map[string]string
		body               string
		status             int
	}{
		{"add the sample", http.MethodPost, "/v1/lists/favorites", jsonBody, `{"path":"sample.mp4"}`, http.StatusCreated},
		{"add the tone in a group", http.MethodPost, "/v1/lists/favorites", jsonBody, `{"path":"tone.wav","group":"audio"}`, http.StatusCreated},
		{"reorder", http.MethodPut, "/v1/lists/favorites", jsonBody, `{"favorites":[{"path":"tone.wav","group":"audio"},{"path":"sample.mp4"}]}`, http.StatusOK},
		{"play", http.MethodPost, "/v1/lists/recent", jsonBody, `{"path":"tone.wav"}`, http.StatusCreated},
		{"play again", http.MethodPost, "/v1/lists/recent", jsonBody, `{"path":"sample.mp4"}`, http.StatusCreated},
		{"not JSON", http.MethodPost, "/v1/lists/favorites", map[string]string{"Content-Type": "text/plain"}, `{"path":"sample.mp4"}`, http.StatusUnsupportedMediaType},
		{"from another site", http.MethodDelete, "/v1/lists/favorites/sample.mp4", map[string]string{"Origin": "http://evil.example"}, "", http.StatusForbidden},
		{"unknown file", http.MethodPost, "/v1/lists/favorites", jsonBody, `{"path":"nope.mp4"}`, http.StatusNotFound},
	}
	for _, st := range steps {
		status, b := do(t, st.method, p+st.path, st.header, st.body)
		if status != st.status {
			t.Fatalf("%s: %d, want %d: %s", st.name, status, st.status, b)
		}
	}
	want := []string{"audio:tone.wav", ":sample.mp4"}
	if got := originFavorites(t, c, c.User, c.UserToken); !slices.Equal(got, want) {
		t.Fatalf("origin has favourites %v, want %v", got, want)
	}
	if got := originRecent(t, c); !slices.Equal(got, []string{"sample.mp4", "tone.wav"}) {
		t.Fatalf("origin has recent %v", got)
	}

	// Another user cannot read them, nor change them.
	other, err := origin.AddUser(c.OriginData, "other")
	if err != nil {
		t.Fatal(err)
	}
	auth := map[string]string{"Authorization": "Bearer " + other, "Content-Type": "application/json"}
	for _, m := range []string{http.MethodGet, http.MethodPut} {
		if status, b := do(t, m, c.Origin.URL+"/v1/users/"+c.User+"/favorites", auth, `{"favorites":[]}`); status != http.StatusForbidden {
			t.Errorf("%s another user's favourites: %d %s, want 403", m, status, b)
		}
	}
	if got := originFavorites(t, c, "other", other); len(got) != 0 {
		t.Errorf("the other user sees favourites %v of their own", got)
	}

	// The lists outlive the origin.
	if err := c.Origin.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Origin.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitInfo(t, c, demo.SampleName, "")
	status, b = do(t, http.MethodGet, p+"/v1/lists/favorites", nil, "")
	var favs origin.FavoritesResponse
	if status != http.StatusOK || json.Unmarshal(b, &favs) != nil || len(favs.Favorites) != 2 || favs.Favorites[0].Path != demo.ToneName {
		t.Fatalf("favourites through the proxy after an origin restart: %d %s", status, b)
	}
	status, b = do(t, http.MethodDelete, p+"/v1/lists/favorites/"+demo.ToneName, nil, "")
	if status != http.StatusNoContent {
		t.Fatalf("remove: %d %s", status, b)
	}
	if got := originFavorites(t, c, c.User, c.UserToken); !slices.Equal(got, []string{":sample.mp4"}) {
		t.Fatalf("after removing the tone, the origin has %v", got)
	}
}

// TestListBodyTooLarge: a list call with a body over the relay's bound is
// the caller's 413, with or without a Content-Length, and its answer names
// neither the origin nor the user.
func TestListBodyTooLarge(t *testing.T) {
	c := start(t, demo.Config{Proxies: 1, ScanInterval: time.Hour})
	big := `{"path":"` + strings.Repeat("a", 2<<20) + `"}`
	for _, tc := range []struct {
		name string
		body io.Reader
	}{
		{"with Content-Length", strings.NewReader(big)},
		{"chunked", io.MultiReader(strings.NewReader(big))},
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, c.Proxies[0].URL+"/v1/lists/favorites", tc.body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("%s: %s %s", tc.name, resp.Status, b)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: %s, want 413", tc.name, resp.Status)
		}
		originHost := strings.TrimPrefix(c.Origin.URL, "http://")
		if bytes.Contains(b, []byte(originHost)) || bytes.Contains(b, []byte("/v1/users/")) {
			t.Errorf("%s: the answer names the origin or the user: %s", tc.name, b)
		}
	}
}
