package origin

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/httpapi"
)

// maxCatalogLimit bounds one page of the catalog.
const maxCatalogLimit = 1000

// has reports whether path is in the catalog.
func (c *catalog) has(path string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.files[path]
	return ok
}

// matches reports whether p contains every word of the query, ignoring
// case: "live 2019" finds "concerts/Live-2019.mp4".
func matches(p string, words []string) bool {
	lp := strings.ToLower(p)
	for _, w := range words {
		if !strings.Contains(lp, w) {
			return false
		}
	}
	return true
}

// getCatalog answers GET /v1/catalog: the media files sorted by path,
// those whose path contains every word of ?q= (any case), ?limit= of them
// (all by default) from ?offset=. X-Total-Count says how many matched.
// Audio and video entries carry their duration where the container states
// it.
func (s *Server) getCatalog(c *gin.Context) error {
	offset, err := queryInt(c, "offset", 0)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "limit", -1)
	if err != nil {
		return err
	}
	if limit > maxCatalogLimit {
		return httpapi.Errorf(http.StatusBadRequest, "limit: at most %d", maxCatalogLimit)
	}
	words := strings.Fields(strings.ToLower(c.Query("q")))
	all := s.cat.list()
	found := all[:0]
	for _, e := range all {
		if matches(e.Path, words) {
			found = append(found, e)
		}
	}
	c.Header("X-Total-Count", strconv.Itoa(len(found)))
	page := found[min(offset, len(found)):]
	if limit >= 0 && limit < len(page) {
		page = page[:limit]
	}
	for i := range page {
		s.addDuration(c.Request.Context(), &page[i])
	}
	c.JSON(http.StatusOK, page)
	return nil
}

// addDuration fills e.Duration for audio and video, from the cache or by
// probing the file; a file that cannot be probed just has no duration.
func (s *Server) addDuration(ctx context.Context, e *CatalogEntry) {
	if !strings.HasPrefix(e.ContentType, "video/") && !strings.HasPrefix(e.ContentType, "audio/") {
		return
	}
	d, err := s.durations.get(e.Path, e.ETag, func() (dur time.Duration, err error) {
		f, v, err := s.media.open(ctx, e.Path)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		return mediaDuration(f, v.size, e.Path)
	})
	if err != nil {
		s.log.Debug("no duration", "path", e.Path, "err", err)
		return
	}
	e.Duration = d.Seconds()
}

// queryInt reads a non-negative integer query parameter.
func queryInt(c *gin.Context, name string, def int) (int, error) {
	v, ok := c.GetQuery(name)
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, httpapi.Errorf(http.StatusBadRequest, "%s: want a non-negative integer, got %q", name, v)
	}
	return n, nil
}
