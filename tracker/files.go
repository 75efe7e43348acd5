package tracker

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpapi"
)

// maxInfoBody bounds a registration: a file at fileinfo.MaxPieces pieces
// has 20 MiB of hashes, but real files (PieceLengthFor keeps them near 4096
// pieces) need a few hundred KiB.
const maxInfoBody = 8 << 20

// postFile registers (or replaces) one file's info.
func (s *Server) postFile(c *gin.Context) error {
	var fi fileinfo.Info
	if err := readJSON(c, maxInfoBody, &fi); err != nil {
		return err
	}
	fi.Peers = nil
	if err := fi.Validate(); err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "%w", err)
	}
	// Store the canonical forms, which the lookups use.
	fi.Path, _ = fileinfo.CleanPath(fi.Path)
	fi.InfoHash = strings.ToLower(fi.InfoHash)
	created, err := s.register(c.Request.Context(), &fi)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.JSON(status, &fi)
	return nil
}

// register stores fi and moves its path from its old swarm, if the file
// changed, to its new one. created reports whether the path is new.
func (s *Server) register(ctx context.Context, fi *fileinfo.Info) (created bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	old, err := s.store.Register(ctx, fi)
	if err != nil {
		return false, err
	}
	if old == nil {
		s.metrics.Torrents.Inc()
	}
	if old == nil || old.InfoHash != fi.InfoHash {
		s.streams.publish(fi.Path)
	}
	s.log.Info("file registered", "path", fi.Path, "infohash", fi.InfoHash, "size", fi.Size,
		"replaced", old != nil && old.InfoHash != fi.InfoHash)
	return old == nil, nil
}

// lookup finds the registered info of the request's path parameter.
func (s *Server) lookup(c *gin.Context) (*fileinfo.Info, error) {
	p, err := fileinfo.CleanPath(c.Param("path"))
	if err != nil {
		return nil, httpapi.Errorf(http.StatusBadRequest, "%w", err)
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), storeTimeout)
	defer cancel()
	fi, err := s.store.Lookup(ctx, p)
	if errors.Is(err, errNotFound) {
		return nil, httpapi.Errorf(http.StatusNotFound, "%s: %w", p, errNotFound)
	}
	return fi, err
}

// getFile answers a file's info, with its current peers for a member of
// its swarm.
func (s *Server) getFile(c *gin.Context) error {
	fi, err := s.lookup(c)
	if err != nil {
		return err
	}
	h, err := parseHash(fi.InfoHash)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), storeTimeout)
	defer cancel()
	member, err := s.mayListPeers(ctx, c)
	if err != nil {
		return err
	}
	if member {
		peers, err := s.store.Peers(ctx, h, MaxNumWant)
		if err != nil {
			return fmt.Errorf("peers of %s: %w", fi.Path, err)
		}
		for _, p := range peers {
			fi.Peers = append(fi.Peers, fileinfo.Peer{IP: p.addr.Addr().String(), Port: int(p.addr.Port())})
		}
	}
	c.JSON(http.StatusOK, fi)
	return nil
}

// mayListPeers reports whether the caller may see who is in a swarm (who
// watches what): a member, with a live passkey in fileinfo.PasskeyHeader,
// or the operator, with the token (a wrong one is refused and counted as
// on every authenticated request).
func (s *Server) mayListPeers(ctx context.Context, c *gin.Context) (bool, error) {
	if pk := c.GetHeader(fileinfo.PasskeyHeader); pk != "" && len(pk) <= maxPasskeyLen {
		if _, ok, err := s.store.Passkey(ctx, passkeyID(pk)); err != nil || ok {
			return ok, err
		}
	}
	if c.GetHeader("Authorization") == "" {
		return false, nil
	}
	return true, s.requireToken(c)
}

// listFiles answers every registered info, without peers.
func (s *Server) listFiles(c *gin.Context) error {
	ctx, cancel := context.WithTimeout(c.Request.Context(), storeTimeout)
	defer cancel()
	out, err := s.store.Files(ctx)
	if err != nil {
		return fmt.Errorf("list files: %w", err)
	}
	if out == nil {
		out = []*fileinfo.Info{} // [] rather than null
	}
	c.JSON(http.StatusOK, out)
	return nil
}

// getTorrent answers a file's BEP 3 .torrent, announcing to this tracker
// (and the others of AnnounceList) with the origins as BEP 19 web seeds.
// With ?passkey=KEY (a live one) its announce URLs carry KEY, which is how a
// standard client (aria2c, transmission) joins the private swarm; without,
// they are the bare /announce, which says that a passkey is needed, and the
// client downloads from the web seeds alone.
func (s *Server) getTorrent(c *gin.Context) error {
	fi, err := s.lookup(c)
	if err != nil {
		return err
	}
	passkey := c.Query("passkey")
	if passkey != "" {
		ctx, cancel := context.WithTimeout(c.Request.Context(), storeTimeout)
		defer cancel()
		_, ok, err := s.store.Passkey(ctx, passkeyID(passkey))
		if err != nil {
			return err
		}
		if !ok {
			return httpapi.Errorf(http.StatusForbidden, "%w", errUnknownPasskey)
		}
	}
	others := make([]string, len(s.cfg.AnnounceList))
	for i, base := range s.cfg.AnnounceList {
		others[i] = fileinfo.AnnounceURL(base, passkey)
	}
	mi, err := fi.MetaInfo(s.announceURL(c.Request, passkey), others...)
	if err != nil {
		return fmt.Errorf("torrent of %s: %w", fi.Path, err)
	}
	var buf bytes.Buffer
	if err := mi.Write(&buf); err != nil {
		return fmt.Errorf("encode torrent of %s: %w", fi.Path, err)
	}
	c.Header("Content-Disposition", mime.FormatMediaType("attachment",
		map[string]string{"filename": fi.TorrentName() + ".torrent"}))
	c.Data(http.StatusOK, "application/x-bittorrent", buf.Bytes())
	return nil
}

// announceURL is this tracker's announce URL for passkey ("": none) as
// the client should see it.
func (s *Server) announceURL(r *http.Request, passkey string) string {
	base := s.cfg.PublicURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return fileinfo.AnnounceURL(base, passkey)
}

// parseHash decodes a 40-digit hex infohash.
func parseHash(s string) ([20]byte, error) {
	var h [20]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("infohash %q is not 40 hex digits", s)
	}
	copy(h[:], b)
	return h, nil
}
