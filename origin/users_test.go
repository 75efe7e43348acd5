package origin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// call does an API request with an optional bearer token and JSON body.
func call(t *testing.T, method, url, token string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
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

// mustCall is call that fails the test on a status other than want.
func mustCall(t *testing.T, want int, method, url, token string, body any) []byte {
	t.Helper()
	status, b := call(t, method, url, token, body)
	if status != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, url, status, want, b)
	}
	return b
}

// userFixture is an origin with a data directory, media files a.mp4,
// b.mp4, c.mp4 and the users alice and bob.
type userFixture struct {
	media, data string
	alice, bob  string // tokens
}

func newUserFixture(t *testing.T) *userFixture {
	t.Helper()
	f := &userFixture{media: t.TempDir(), data: t.TempDir()}
	for _, n := range []string{"a.mp4", "b.mp4", "c.mp4"} {
		writeFile(t, f.media, n, []byte(n))
	}
	var err error
	if f.alice, err = AddUser(f.data, "alice"); err != nil {
		t.Fatal(err)
	}
	if f.bob, err = AddUser(f.data, "bob"); err != nil {
		t.Fatal(err)
	}
	return f
}

// start starts an origin over the fixture's directories, once its catalog
// lists the media.
func (f *userFixture) start(t *testing.T) *testOrigin {
	t.Helper()
	o := startOrigin(t, Config{Media: f.media, DataDir: f.data})
	eventually(t, "catalog", func() bool { return len(o.catalog(t)) >= 3 })
	return o
}

func favoritePaths(t *testing.T, body []byte) []string {
	t.Helper()
	var r FavoritesResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("favorites %s: %v", body, err)
	}
	var out []string
	for _, f := range r.Favorites {
		out = append(out, f.Group+":"+f.Path)
	}
	return out
}

func recentPaths(t *testing.T, body []byte) []string {
	t.Helper()
	var r RecentResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("recent %s: %v", body, err)
	}
	out := []string{}
	for _, p := range r.Recent {
		out = append(out, p.Path)
	}
	return out
}

func TestListsRefuseOtherUsers(t *testing.T) {
	f := newUserFixture(t)
	o := f.start(t)
	aliceFavs := o.url + "/v1/users/alice/favorites"
	mustCall(t, http.StatusCreated, http.MethodPost, aliceFavs, f.alice, AddFavoriteRequest{Path: "a.mp4"})

	tests := []struct {
		name, method, url, auth string
		body                    any
		want                    int
	}{
		{"no token", http.MethodGet, aliceFavs, "", nil, http.StatusUnauthorized},
		{"wrong token", http.MethodGet, aliceFavs, "Bearer nope", nil, http.StatusUnauthorized},
		{"not bearer", http.MethodGet, aliceFavs, "Basic " + f.alice, nil, http.StatusUnauthorized},
		{"own lists", http.MethodGet, aliceFavs, "Bearer " + f.alice, nil, http.StatusOK},
		{"bob reads alice's favourites", http.MethodGet, aliceFavs, "Bearer " + f.bob, nil, http.StatusForbidden},
		{"bob reads alice's recent", http.MethodGet, o.url + "/v1/users/alice/recent", "Bearer " + f.bob, nil, http.StatusForbidden},
		{"bob adds to alice's favourites", http.MethodPost, aliceFavs, "Bearer " + f.bob, AddFavoriteRequest{Path: "b.mp4"}, http.StatusForbidden},
		{"bob replaces alice's favourites", http.MethodPut, aliceFavs, "Bearer " + f.bob, FavoritesResponse{}, http.StatusForbidden},
		{"bob removes alice's favourite", http.MethodDelete, aliceFavs + "/a.mp4", "Bearer " + f.bob, nil, http.StatusForbidden},
		{"bob plays as alice", http.MethodPost, o.url + "/v1/users/alice/recent", "Bearer " + f.bob, PlayRequest{Path: "b.mp4"}, http.StatusForbidden},
		{"bob clears alice's recent", http.MethodDelete, o.url + "/v1/users/alice/recent", "Bearer " + f.bob, nil, http.StatusForbidden},
		{"unknown user", http.MethodGet, o.url + "/v1/users/carol/favorites", "Bearer " + f.bob, nil, http.StatusForbidden},
		{"unknown user, no token", http.MethodGet, o.url + "/v1/users/carol/favorites", "", nil, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r io.Reader
			if tt.body != nil {
				b, _ := json.Marshal(tt.body)
				r = bytes.NewReader(b)
			}
			req, _ := http.NewRequest(tt.method, tt.url, r)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("%d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	// Nothing bob tried changed alice's lists.
	got := favoritePaths(t, mustCall(t, http.StatusOK, http.MethodGet, aliceFavs, f.alice, nil))
	if !slices.Equal(got, []string{":a.mp4"}) {
		t.Errorf("alice's favourites %v after bob's attempts", got)
	}
	if got := recentPaths(t, mustCall(t, http.StatusOK, http.MethodGet, o.url+"/v1/users/alice/recent", f.alice, nil)); len(got) != 0 {
		t.Errorf("alice's recent %v after bob's attempts", got)
	}
}

func TestFavorites(t *testing.T) {
	f := newUserFixture(t)
	o := f.start(t)
	favs := o.url + "/v1/users/alice/favorites"
	idx := func(i int) *int { return &i }

	steps := []struct {
		name, method, url string
		body              any
		status            int
		want              []string // the favourites after the step, "group:path"
	}{
		{"add a", http.MethodPost, favs, AddFavoriteRequest{Path: "a.mp4"}, http.StatusCreated, []string{":a.mp4"}},
		{"add b in a group", http.MethodPost, favs, AddFavoriteRequest{Path: "/b.mp4", Group: "films"}, http.StatusCreated, []string{":a.mp4", "films:b.mp4"}},
		{"add c at the top", http.MethodPost, favs, AddFavoriteRequest{Path: "c.mp4", Index: idx(0)}, http.StatusCreated, []string{":c.mp4", ":a.mp4", "films:b.mp4"}},
		{"regroup a in place", http.MethodPost, favs, AddFavoriteRequest{Path: "a.mp4", Group: "films"}, http.StatusOK, []string{":c.mp4", "films:a.mp4", "films:b.mp4"}},
		{"move b to the top", http.MethodPost, favs, AddFavoriteRequest{Path: "b.mp4", Group: "films", Index: idx(0)}, http.StatusOK, []string{"films:b.mp4", ":c.mp4", "films:a.mp4"}},
		{"reorder", http.MethodPut, favs, FavoritesResponse{Favorites: []Favorite{{Path: "a.mp4"}, {Path: "b.mp4", Group: "x"}, {Path: "c.mp4"}}}, http.StatusOK, []string{":a.mp4", "x:b.mp4", ":c.mp4"}},
		{"remove b", http.MethodDelete, favs + "/b.mp4", nil, http.StatusNoContent, []string{":a.mp4", ":c.mp4"}},
		{"remove b again", http.MethodDelete, favs + "/b.mp4", nil, http.StatusNotFound, []string{":a.mp4", ":c.mp4"}},
		{"not in the catalog", http.MethodPost, favs, AddFavoriteRequest{Path: "nope.mp4"}, http.StatusNotFound, []string{":a.mp4", ":c.mp4"}},
		{"bad path", http.MethodPost, favs, AddFavoriteRequest{Path: "../etc/passwd"}, http.StatusBadRequest, []string{":a.mp4", ":c.mp4"}},
		{"twice in a list", http.MethodPut, favs, FavoritesResponse{Favorites: []Favorite{{Path: "a.mp4"}, {Path: "a.mp4"}}}, http.StatusBadRequest, []string{":a.mp4", ":c.mp4"}},
		{"control bytes in a group", http.MethodPost, favs, AddFavoriteRequest{Path: "a.mp4", Group: "a\nb"}, http.StatusBadRequest, []string{":a.mp4", ":c.mp4"}},
		{"unknown field", http.MethodPost, favs, map[string]string{"path": "a.mp4", "colour": "red"}, http.StatusBadRequest, []string{":a.mp4", ":c.mp4"}},
	}
	for _, st := range steps {
		status, body := call(t, st.method, st.url, f.alice, st.body)
		if status != st.status {
			t.Fatalf("%s: %d, want %d: %s", st.name, status, st.status, body)
		}
		got := favoritePaths(t, mustCall(t, http.StatusOK, http.MethodGet, favs, f.alice, nil))
		if !slices.Equal(got, st.want) {
			t.Fatalf("%s: favourites %v, want %v", st.name, got, st.want)
		}
	}
	// Bob's lists are his own.
	if got := favoritePaths(t, mustCall(t, http.StatusOK, http.MethodGet, o.url+"/v1/users/bob/favorites", f.bob, nil)); len(got) != 0 {
		t.Errorf("bob's favourites %v, want none", got)
	}
}

func TestRecentlyPlayed(t *testing.T) {
	f := newUserFixture(t)
	for i := range MaxRecent + 2 {
		writeFile(t, f.media, fmt.Sprintf("many/%03d.mp3", i), []byte{byte(i)})
	}
	o := startOrigin(t, Config{Media: f.media, DataDir: f.data})
	eventually(t, "catalog", func() bool { return len(o.catalog(t)) == MaxRecent+5 })
	recent := o.url + "/v1/users/alice/recent"

	for _, p := range []string{"a.mp4", "b.mp4", "/a.mp4"} {
		mustCall(t, http.StatusCreated, http.MethodPost, recent, f.alice, PlayRequest{Path: p})
	}
	got := recentPaths(t, mustCall(t, http.StatusOK, http.MethodGet, recent, f.alice, nil))
	if want := []string{"a.mp4", "b.mp4"}; !slices.Equal(got, want) {
		t.Fatalf("recent %v, want %v (newest first, one entry per path)", got, want)
	}
	mustCall(t, http.StatusNotFound, http.MethodPost, recent, f.alice, PlayRequest{Path: "gone.mp4"})

	// The list is bounded: the oldest plays fall off.
	for i := range MaxRecent + 2 {
		mustCall(t, http.StatusCreated, http.MethodPost, recent, f.alice, PlayRequest{Path: fmt.Sprintf("many/%03d.mp3", i)})
	}
	got = recentPaths(t, mustCall(t, http.StatusOK, http.MethodGet, recent, f.alice, nil))
	if len(got) != MaxRecent || got[0] != fmt.Sprintf("many/%03d.mp3", MaxRecent+1) || slices.Contains(got, "a.mp4") {
		t.Fatalf("after %d plays: %d entries, newest %q", MaxRecent+2, len(got), got[0])
	}
	mustCall(t, http.StatusNoContent, http.MethodDelete, recent, f.alice, nil)
	if got := recentPaths(t, mustCall(t, http.StatusOK, http.MethodGet, recent, f.alice, nil)); len(got) != 0 {
		t.Fatalf("recent %v after clearing", got)
	}
}

func TestListsPersistAcrossRestart(t *testing.T) {
	f := newUserFixture(t)
	t.Run("first run", func(t *testing.T) {
		o := f.start(t)
		mustCall(t, http.StatusCreated, http.MethodPost, o.url+"/v1/users/alice/favorites", f.alice, AddFavoriteRequest{Path: "b.mp4", Group: "g"})
		mustCall(t, http.StatusCreated, http.MethodPost, o.url+"/v1/users/alice/favorites", f.alice, AddFavoriteRequest{Path: "a.mp4"})
		mustCall(t, http.StatusCreated, http.MethodPost, o.url+"/v1/users/alice/recent", f.alice, PlayRequest{Path: "c.mp4"})
	})
	// The first origin stopped when its subtest ended.
	t.Run("second run", func(t *testing.T) {
		o := f.start(t)
		got := favoritePaths(t, mustCall(t, http.StatusOK, http.MethodGet, o.url+"/v1/users/alice/favorites", f.alice, nil))
		if want := []string{"g:b.mp4", ":a.mp4"}; !slices.Equal(got, want) {
			t.Errorf("favourites after restart %v, want %v", got, want)
		}
		got = recentPaths(t, mustCall(t, http.StatusOK, http.MethodGet, o.url+"/v1/users/alice/recent", f.alice, nil))
		if want := []string{"c.mp4"}; !slices.Equal(got, want) {
			t.Errorf("recent after restart %v, want %v", got, want)
		}
	})
	// Only the token's hash is on disk.
	b, err := os.ReadFile(filepath.Join(f.data, usersDir, "alice", credentialFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), f.alice) {
		t.Error("the credential file holds the token itself")
	}
}

func TestAddUserAgainReplacesToken(t *testing.T) {
	f := newUserFixture(t)
	o := f.start(t)
	favs := o.url + "/v1/users/alice/favorites"
	mustCall(t, http.StatusCreated, http.MethodPost, favs, f.alice, AddFavoriteRequest{Path: "a.mp4"})
	// A running origin sees the new token at once.
	tok, err := AddUser(f.data, "alice")
	if err != nil {
		t.Fatal(err)
	}
	mustCall(t, http.StatusUnauthorized, http.MethodGet, favs, f.alice, nil)
	if got := favoritePaths(t, mustCall(t, http.StatusOK, http.MethodGet, favs, tok, nil)); !slices.Equal(got, []string{":a.mp4"}) {
		t.Errorf("favourites with the new token %v", got)
	}
	for _, bad := range []string{"", ".hidden", "a/b", "..", strings.Repeat("x", 65), "café"} {
		if _, err := AddUser(f.data, bad); err == nil {
			t.Errorf("AddUser(%q) succeeded", bad)
		}
	}
}

func TestListsOffWithoutDataDir(t *testing.T) {
	o := startOrigin(t, Config{})
	status, body := call(t, http.MethodGet, o.url+"/v1/users/alice/favorites", "x", nil)
	if status != http.StatusNotFound {
		t.Fatalf("%d, want 404: %s", status, body)
	}
}

// TestFailedUserAuthLimited: unknown user tokens from one address are
// answered 401 ten times, then 429 before any token is looked at (alice's
// own too); another address is not affected.
func TestFailedUserAuthLimited(t *testing.T) {
	f := newUserFixture(t)
	o := f.start(t)
	favs := o.url + "/v1/users/alice/favorites"
	var codes []int
	for i := range 60 {
		st, _ := call(t, http.MethodGet, favs, fmt.Sprintf("guess-%02d", i), nil)
		codes = append(codes, st)
	}
	for i, st := range codes {
		want := http.StatusUnauthorized
		if i >= 10 {
			want = http.StatusTooManyRequests
		}
		if st != want {
			t.Fatalf("wrong token %d: status %d, want %d (all: %v)", i, st, want, codes)
		}
	}
	if st, b := call(t, http.MethodGet, favs, f.alice, nil); st != http.StatusTooManyRequests {
		t.Errorf("alice's token from the blocked address: %d %s, want 429", st, b)
	}
	// 127.0.0.2 is loopback too, and another address.
	other := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, favs, nil)
	req.Header.Set("Authorization", "Bearer "+f.alice)
	resp, err := other.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("alice's token from another address: %s, want 200", resp.Status)
	}
}
