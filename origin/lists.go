package origin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpapi"
)

// maxListBody bounds a request body of the lists API.
const maxListBody = 256 << 10

// ctxUser is the gin context key of the authenticated user's name.
const ctxUser = "p2sp.user"

// FavoritesResponse is the body of GET, POST and PUT
// /v1/users/{user}/favorites.
type FavoritesResponse struct {
	Favorites []Favorite `json:"favorites"`
}

// RecentResponse is the body of GET and POST /v1/users/{user}/recent.
type RecentResponse struct {
	Recent []Play `json:"recent"`
}

// AddFavoriteRequest is the body of POST /v1/users/{user}/favorites: add
// Path (or update it) with Group, at Index if set (0 is the top), else at
// the end for a new favourite and in place for one already there.
type AddFavoriteRequest struct {
	Path  string `json:"path"`
	Group string `json:"group,omitempty"`
	Index *int   `json:"index,omitempty"`
}

// PlayRequest is the body of POST /v1/users/{user}/recent.
type PlayRequest struct {
	Path string `json:"path"`
}

func (s *Server) userRoutes(e *gin.Engine) {
	g := e.Group("/v1/users/:user", httpapi.Handle(s.authUser))
	g.GET("/favorites", httpapi.Handle(s.getFavorites))
	g.POST("/favorites", httpapi.Handle(s.addFavorite))
	g.PUT("/favorites", httpapi.Handle(s.putFavorites))
	g.DELETE("/favorites/*path", httpapi.Handle(s.deleteFavorite))
	g.GET("/recent", httpapi.Handle(s.getRecent))
	g.POST("/recent", httpapi.Handle(s.addPlay))
	g.DELETE("/recent", httpapi.Handle(s.clearRecent))
}

// authUser lets a request through only with "Authorization: Bearer
// <token>" of the user named in the path: 401 without a token or with one
// no user has, 403 with another user's, 429 from an address whose tokens
// were unknown too often (a request without a token is no guess).
func (s *Server) authUser(c *gin.Context) error {
	if s.users == nil {
		return httpapi.Errorf(http.StatusNotFound, "user lists are off: the origin has no data directory")
	}
	want := c.Param("user")
	token, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if !ok || token == "" {
		c.Header("WWW-Authenticate", `Bearer realm="p2sp"`)
		return httpapi.Errorf(http.StatusUnauthorized, "a user token is required (Authorization: Bearer TOKEN)")
	}
	if err := s.authGuard.Refused(c.Writer, c.Request); err != nil {
		return err
	}
	owner, err := s.users.owner(token, want)
	switch {
	case err != nil:
		return fmt.Errorf("authenticate: %w", err)
	case owner == "":
		s.authGuard.Failed(c.Request)
		c.Header("WWW-Authenticate", `Bearer realm="p2sp", error="invalid_token"`)
		return httpapi.Errorf(http.StatusUnauthorized, "unknown user token")
	case owner != want:
		return httpapi.Errorf(http.StatusForbidden, "user %s may not use the lists of %q", owner, want)
	}
	c.Set(ctxUser, owner)
	return nil
}

func (s *Server) getFavorites(c *gin.Context) error {
	l, err := s.users.get(c.GetString(ctxUser))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, FavoritesResponse{Favorites: l.Favorites})
	return nil
}

func (s *Server) addFavorite(c *gin.Context) error {
	var req AddFavoriteRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	p, err := s.catalogPath(req.Path)
	if err != nil {
		return err
	}
	if err := checkGroup(req.Group); err != nil {
		return err
	}
	created := false
	l, err := s.users.update(c.GetString(ctxUser), func(l *lists) error {
		i := slices.IndexFunc(l.Favorites, func(f Favorite) bool { return f.Path == p })
		fav := Favorite{Path: p, Group: req.Group, Added: time.Now().UTC()}
		if i >= 0 {
			fav.Added = l.Favorites[i].Added
			if req.Index == nil {
				l.Favorites[i] = fav
				return nil
			}
			l.Favorites = slices.Delete(l.Favorites, i, i+1)
		} else if len(l.Favorites) >= MaxFavorites {
			return httpapi.Errorf(http.StatusConflict, "at most %d favourites", MaxFavorites)
		}
		created = i < 0
		at := len(l.Favorites)
		if req.Index != nil {
			at = min(max(*req.Index, 0), len(l.Favorites))
		}
		l.Favorites = slices.Insert(l.Favorites, at, fav)
		return nil
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.JSON(status, FavoritesResponse{Favorites: l.Favorites})
	return nil
}

// putFavorites replaces the favourites with the body's list, in its order:
// that is how a client reorders, regroups or removes several at once.
// Paths need not be in the catalog (a file may be away for a while), but
// must be clean and listed once.
func (s *Server) putFavorites(c *gin.Context) error {
	var req FavoritesResponse
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if len(req.Favorites) > MaxFavorites {
		return httpapi.Errorf(http.StatusBadRequest, "at most %d favourites", MaxFavorites)
	}
	seen := map[string]bool{}
	for i, f := range req.Favorites {
		p, err := fileinfo.CleanPath(f.Path)
		if err != nil {
			return httpapi.Errorf(http.StatusBadRequest, "favourite %d: bad path: %w", i, err)
		}
		if seen[p] {
			return httpapi.Errorf(http.StatusBadRequest, "favourite %d: %s is listed twice", i, p)
		}
		if err := checkGroup(f.Group); err != nil {
			return err
		}
		seen[p] = true
		req.Favorites[i].Path = p
	}
	l, err := s.users.update(c.GetString(ctxUser), func(l *lists) error {
		added := map[string]time.Time{}
		for _, f := range l.Favorites {
			added[f.Path] = f.Added
		}
		now := time.Now().UTC()
		next := make([]Favorite, 0, len(req.Favorites))
		for _, f := range req.Favorites {
			at, ok := added[f.Path]
			if !ok {
				at = now
			}
			next = append(next, Favorite{Path: f.Path, Group: f.Group, Added: at})
		}
		l.Favorites = next
		return nil
	})
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, FavoritesResponse{Favorites: l.Favorites})
	return nil
}

func (s *Server) deleteFavorite(c *gin.Context) error {
	p, err := fileinfo.CleanPath(c.Param("path"))
	if err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "bad path: %w", err)
	}
	_, err = s.users.update(c.GetString(ctxUser), func(l *lists) error {
		i := slices.IndexFunc(l.Favorites, func(f Favorite) bool { return f.Path == p })
		if i < 0 {
			return httpapi.Errorf(http.StatusNotFound, "%s is not a favourite", p)
		}
		l.Favorites = slices.Delete(l.Favorites, i, i+1)
		return nil
	})
	if err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

func (s *Server) getRecent(c *gin.Context) error {
	l, err := s.users.get(c.GetString(ctxUser))
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, RecentResponse{Recent: l.Recent})
	return nil
}

// addPlay puts a play at the top of the recently played list; an earlier
// play of the same path is dropped, so the list says what, not how often.
func (s *Server) addPlay(c *gin.Context) error {
	var req PlayRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	p, err := s.catalogPath(req.Path)
	if err != nil {
		return err
	}
	l, err := s.users.update(c.GetString(ctxUser), func(l *lists) error {
		l.Recent = slices.DeleteFunc(l.Recent, func(r Play) bool { return r.Path == p })
		l.Recent = slices.Insert(l.Recent, 0, Play{Path: p, PlayedAt: time.Now().UTC()})
		if len(l.Recent) > MaxRecent {
			l.Recent = l.Recent[:MaxRecent]
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.JSON(http.StatusCreated, RecentResponse{Recent: l.Recent})
	return nil
}

func (s *Server) clearRecent(c *gin.Context) error {
	_, err := s.users.update(c.GetString(ctxUser), func(l *lists) error {
		l.Recent = []Play{}
		return nil
	})
	if err != nil {
		return err
	}
	c.Status(http.StatusNoContent)
	return nil
}

// catalogPath cleans p and checks that the catalog lists it: favourites
// and plays name media, not arbitrary strings.
func (s *Server) catalogPath(p string) (string, error) {
	clean, err := fileinfo.CleanPath(p)
	if err != nil {
		return "", httpapi.Errorf(http.StatusBadRequest, "bad path: %w", err)
	}
	if !s.cat.has(clean) {
		return "", httpapi.Errorf(http.StatusNotFound, "%s is not in the catalog", clean)
	}
	return clean, nil
}

func checkGroup(g string) error {
	if len(g) > maxGroupLen || strings.ContainsFunc(g, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return httpapi.Errorf(http.StatusBadRequest, "group %q: at most %d printable bytes", g, maxGroupLen)
	}
	return nil
}

// decodeBody reads a JSON body of at most maxListBody bytes into v,
// refusing fields v does not have.
func decodeBody(c *gin.Context, v any) error {
	b, err := httpapi.ReadBody(c, maxListBody)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "bad JSON body: %w", err)
	}
	return nil
}
