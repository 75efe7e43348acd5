package tracker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/httpapi"
	"github.com/p2sp/p2sp/metrics"
)

// maxScrapeHashes bounds one scrape; a full scrape (no info_hash) is not
// offered, since it would list every file to anyone.
const maxScrapeHashes = 100

// announce serves GET /announce/<passkey> (and GET /announce, which only
// says that a passkey is needed). Every answer, failures included, is a
// bencoded dictionary with status 200, as BitTorrent clients expect.
func (s *Server) announce(c *gin.Context) {
	remote := httpapi.RemoteAddr(c.Request)
	if !s.limits.Allow(remote) {
		s.fail(c, metrics.AnnounceRateLimited, "rate limited: announce less often")
		return
	}
	passkey := c.Param("passkey")
	if passkey == "" || len(passkey) > maxPasskeyLen {
		s.fail(c, metrics.AnnounceUnauthorized, "this tracker is private: announce to /announce/<passkey>, "+
			"the announce URL of a .torrent fetched with ?passkey=<passkey> (ask the operator for one)")
		return
	}
	a, err := ParseAnnounce(c.Request.URL.RawQuery, remote)
	if err != nil {
		s.fail(c, metrics.AnnounceFailed, err.Error())
		return
	}
	a.Cred = passkeyID(passkey)
	ctx, cancel := context.WithTimeout(c.Request.Context(), storeTimeout)
	defer cancel()
	res, ok, err := s.store.Announce(ctx, &a)
	if errors.Is(err, errUnknownPasskey) {
		s.fail(c, metrics.AnnounceUnauthorized, err.Error())
		return
	}
	if err != nil {
		s.log.Error("announce", "err", err)
		s.fail(c, metrics.AnnounceFailed, "tracker store unavailable, try again")
		return
	}
	if !ok {
		s.fail(c, metrics.AnnounceUnregistered, "unregistered torrent")
		return
	}
	interval := max(int64(s.cfg.AnnounceInterval/time.Second), 1)
	resp := map[string]any{
		"interval":     interval,
		"min interval": max(interval/2, 1),
		"complete":     res.complete,
		"incomplete":   res.incomplete,
	}
	if !res.listed && a.Event != EventStopped {
		resp["warning message"] = fmt.Sprintf("not listed: this swarm lists at most %d peers of one address, "+
			"and a peer id only for the passkey that registered it", s.cfg.PeersPerAddr)
	}
	if a.Compact {
		// BEP 23 for IPv4, BEP 7's peers6 for IPv6.
		var v4, v6 []byte
		for _, p := range res.peers {
			ip := p.addr.Addr()
			port := []byte{byte(p.addr.Port() >> 8), byte(p.addr.Port())}
			if ip.Is4() {
				v4 = append(append(v4, ip.AsSlice()...), port...)
			} else {
				v6 = append(append(v6, ip.AsSlice()...), port...)
			}
		}
		resp["peers"] = string(v4)
		if len(v6) > 0 {
			resp["peers6"] = string(v6)
		}
	} else {
		list := make([]map[string]any, 0, len(res.peers))
		for _, p := range res.peers {
			d := map[string]any{"ip": p.addr.Addr().String(), "port": int(p.addr.Port())}
			if !a.NoPeerID {
				d["peer id"] = string(p.id[:])
			}
			list = append(list, d)
		}
		resp["peers"] = list
	}
	s.writeBencode(c, resp)
	s.metrics.Announces.WithLabelValues(metrics.AnnounceOK).Inc()
}

// fail answers a failed announce or scrape and counts it under result
// (announces only: scrapes pass "").
func (s *Server) fail(c *gin.Context, result, reason string) {
	if result != "" {
		s.metrics.Announces.WithLabelValues(result).Inc()
	}
	s.writeBencode(c, map[string]any{"failure reason": reason})
}

func (s *Server) writeBencode(c *gin.Context, v any) {
	b, err := bencode.Marshal(v)
	if err != nil {
		// Only our own maps reach here; this cannot happen, but a client
		// still gets a well-formed answer if it does.
		s.log.Error("encode tracker answer", "err", err)
		b = []byte("d14:failure reason14:internal errore")
	}
	c.Data(http.StatusOK, "text/plain", b)
}

// scrape serves GET /scrape (BEP 48) for the given info_hash parameters.
func (s *Server) scrape(c *gin.Context) {
	if !s.limits.Allow(httpapi.RemoteAddr(c.Request)) {
		s.fail(c, "", "rate limited: scrape less often")
		return
	}
	hashes, err := parseScrape(c.Request.URL.RawQuery)
	if err != nil {
		s.fail(c, "", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), storeTimeout)
	defer cancel()
	files := make(map[string]map[string]int, len(hashes))
	for _, h := range hashes {
		sc, ok, err := s.store.Scrape(ctx, h)
		if err != nil {
			s.log.Error("scrape", "err", err)
			s.fail(c, "", "tracker store unavailable, try again")
			return
		}
		if !ok {
			continue
		}
		files[string(h[:])] = map[string]int{
			"complete":   sc.complete,
			"incomplete": sc.incomplete,
			"downloaded": sc.downloaded,
		}
	}
	s.writeBencode(c, map[string]any{"files": files})
}

// parseScrape returns a scrape's info_hash parameters, each 20 bytes.
func parseScrape(rawQuery string) ([][20]byte, error) {
	if len(rawQuery) > maxQueryLen*4 {
		return nil, errors.New("query too long")
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, errors.New("malformed query string")
	}
	vs := q["info_hash"]
	switch {
	case len(vs) == 0:
		return nil, errors.New("info_hash is missing (no full scrape here)")
	case len(vs) > maxScrapeHashes:
		return nil, fmt.Errorf("more than %d info_hash parameters", maxScrapeHashes)
	}
	out := make([][20]byte, len(vs))
	for i, v := range vs {
		if len(v) != 20 {
			return nil, fmt.Errorf("info_hash is %d bytes, not 20", len(v))
		}
		copy(out[i][:], v)
	}
	return out, nil
}
