package proxy

import (
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"
)

// fileStatus is one path's line in /v1/status.
type fileStatus struct {
	Path           string `json:"path"`
	InfoHash       string `json:"infohash,omitempty"`
	Size           int64  `json:"size"`
	PiecesTotal    int    `json:"pieces_total"`
	PiecesHeld     int    `json:"pieces_held"`
	Complete       bool   `json:"complete"`
	Peers          int    `json:"peers"`
	PeerBytes      int64  `json:"peer_bytes"`
	OriginBytes    int64  `json:"origin_bytes"`
	CacheBytes     int64  `json:"cache_bytes"`
	OriginFetched  int64  `json:"origin_fetched_bytes"`
	UploadedBytes  int64  `json:"uploaded_bytes"`
	VerifyFailures int64  `json:"verification_failures"`
	// OriginRequests is the number of origin range requests under way.
	OriginRequests int `json:"origin_requests"`
	// OriginShare is origin bytes over all bytes served for this path.
	OriginShare float64 `json:"origin_share"`
	// Pieces, with ?pieces=1, has one character per piece: 1 held, 0 not.
	Pieces string `json:"pieces,omitempty"`
	Error  string `json:"error,omitempty"`
	// RefusedInfo says why the tracker's last file info for the path was
	// refused (its signature does not verify); the path then streams from
	// the origin alone.
	RefusedInfo string `json:"refused_info,omitempty"`
}

// status is the whole of /v1/status.
type status struct {
	Files       []fileStatus `json:"files"`
	Total       fileStatus   `json:"total"`
	BannedPeers []string     `json:"banned_peers"`
	Cache       struct {
		Bytes     int64 `json:"bytes"`
		Capacity  int64 `json:"capacity"`
		Entries   int   `json:"entries"`
		Evictions int64 `json:"evictions"`
	} `json:"cache"`
	BTPort int `json:"bt_port"`
	// Torrents is the number of torrents open (files joined to a swarm).
	Torrents int `json:"torrents"`
	// OriginKeys are the keys file info must be signed with, and
	// OriginKeySource where they came from: configured, pinned on first
	// use, or none yet.
	OriginKeys      []string `json:"origin_keys"`
	OriginKeySource string   `json:"origin_key_source"`
	// Streams are the live streams the proxy follows.
	Streams []liveStatus `json:"streams"`
	// Origins and Trackers are the configured ones, in order, each with
	// whether it is passed over after a failure.
	Origins  []upstreamStatus `json:"origins"`
	Trackers []upstreamStatus `json:"trackers"`
}

// upstreamStatus is one origin or tracker on /v1/status.
type upstreamStatus struct {
	URL  string `json:"url"`
	Down bool   `json:"down"`
}

func upstreams(urls []string, down []bool) []upstreamStatus {
	out := make([]upstreamStatus, len(urls))
	for i, u := range urls {
		out[i] = upstreamStatus{URL: u, Down: down[i]}
	}
	return out
}

func (s *Server) handleStatus(c *gin.Context) error {
	c.JSON(http.StatusOK, s.status(c.Query("pieces") == "1"))
	return nil
}

func (s *Server) status(pieces bool) status {
	var out status
	byPath := map[string]*fileStatus{}
	s.mu.Lock()
	for p, st := range s.stats {
		fs := &fileStatus{
			Path: p, PeerBytes: st.peerBytes.Load(), OriginBytes: st.originBytes.Load(),
			CacheBytes: st.cacheBytes.Load(), OriginFetched: st.originFetched.Load(),
			VerifyFailures: st.verifyFailures.Load(),
		}
		if e := st.lastErr.Load(); e != nil {
			fs.Error = *e
		}
		if r := st.refused.Load(); r != nil {
			fs.RefusedInfo = *r
		}
		byPath[p] = fs
	}
	files := make([]*file, 0, len(s.files))
	for _, f := range s.files {
		files = append(files, f)
	}
	s.mu.Unlock()
	out.Torrents = len(files)
	for _, e := range s.cache.Entries() {
		fs, ok := byPath[e.Info().Path]
		if !ok {
			fs = &fileStatus{Path: e.Info().Path}
			byPath[fs.Path] = fs
		}
		fs.InfoHash, fs.Size = e.Info().InfoHash, e.Info().Size
		fs.PiecesTotal, fs.PiecesHeld, fs.Complete = e.Info().NumPieces(), e.HaveCount(), e.Complete()
		if pieces {
			b := make([]byte, fs.PiecesTotal)
			for i := range b {
				b[i] = '0'
				if e.Have(i) {
					b[i] = '1'
				}
			}
			fs.Pieces = string(b)
		}
	}
	for _, f := range files {
		if fs, ok := byPath[f.info.Path]; ok && fs.InfoHash == f.info.InfoHash {
			ts := f.torrent.Stats()
			fs.Peers, fs.UploadedBytes = ts.Peers, ts.UploadedBytes
			fs.VerifyFailures += ts.BadPieces
			f.mu.Lock()
			fs.OriginRequests = len(f.runs)
			f.mu.Unlock()
		}
	}
	for _, fs := range byPath {
		if all := fs.PeerBytes + fs.OriginBytes + fs.CacheBytes; all > 0 {
			fs.OriginShare = float64(fs.OriginBytes) / float64(all)
		}
		t := &out.Total
		t.Size += fs.Size
		t.PiecesTotal += fs.PiecesTotal
		t.PiecesHeld += fs.PiecesHeld
		t.Peers += fs.Peers
		t.PeerBytes += fs.PeerBytes
		t.OriginBytes += fs.OriginBytes
		t.CacheBytes += fs.CacheBytes
		t.OriginFetched += fs.OriginFetched
		t.UploadedBytes += fs.UploadedBytes
		t.VerifyFailures += fs.VerifyFailures
		t.OriginRequests += fs.OriginRequests
		out.Files = append(out.Files, *fs)
	}
	if all := out.Total.PeerBytes + out.Total.OriginBytes + out.Total.CacheBytes; all > 0 {
		out.Total.OriginShare = float64(out.Total.OriginBytes) / float64(all)
	}
	sort.Slice(out.Files, func(i, j int) bool { return out.Files[i].Path < out.Files[j].Path })
	out.BannedPeers = s.swarm.BannedIPs()
	cs := s.cache.Stats()
	out.Cache.Bytes, out.Cache.Capacity, out.Cache.Entries, out.Cache.Evictions = cs.Bytes, cs.Capacity, cs.Entries, cs.Evictions
	out.BTPort = s.swarm.Port()
	out.OriginKeys, out.OriginKeySource = s.tracker.trust.state()
	out.Origins = upstreams(s.origin.Bases(), s.origin.Down())
	out.Trackers = upstreams(s.tracker.bases, s.tracker.health.Down(time.Now()))
	out.Streams = liveStatuses(s.liveStates())
	return out
}
