package proxy

import (
	"embed"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/httpapi"
)

// web holds the player page: plain HTML, CSS and JavaScript, no build step
// and nothing fetched from elsewhere. hls.light.min.js is hls.js 1.7.4
// (npm, Apache-2.0, hls.js-LICENSE.txt), as published, for HLS playlists
// in browsers without HLS of their own (Chromium, Firefox).
//
//go:embed web
var web embed.FS

// pageCSP lets the page load only its own scripts, styles and media; a
// playlist plays from a MediaSource, whose URL is a blob: one.
const pageCSP = "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// pageRoutes adds the player page at / with its assets under /ui/, and
// the calls the page makes besides /stream and /v1/status: the origin's
// catalog and the user's lists, relayed (see lists.go).
func (s *Server) pageRoutes(e *gin.Engine) {
	assets := http.FS(web)
	e.GET("/", func(c *gin.Context) {
		pageHeaders(c)
		c.FileFromFS("web/", assets) // index.html
	})
	e.GET("/ui/*file", func(c *gin.Context) {
		pageHeaders(c)
		c.FileFromFS("web"+c.Param("file"), assets)
	})
	e.GET("/v1/me", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"user": s.cfg.User, "lists": s.cfg.User != ""})
	})
	e.GET("/v1/catalog", httpapi.Handle(s.relayCatalog))
	lists := e.Group("/v1/lists", httpapi.Handle(s.checkListCall))
	relay := httpapi.Handle(s.relayList)
	lists.GET("/favorites", relay)
	lists.POST("/favorites", relay)
	lists.PUT("/favorites", relay)
	lists.DELETE("/favorites/*path", relay)
	lists.GET("/recent", relay)
	lists.POST("/recent", relay)
}

func pageHeaders(c *gin.Context) {
	c.Header("Content-Security-Policy", pageCSP)
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Referrer-Policy", "no-referrer")
	// The page changes with the binary; always revalidate.
	c.Header("Cache-Control", "no-cache")
}
