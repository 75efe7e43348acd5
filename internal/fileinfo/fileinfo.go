package fileinfo

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// Info describes one media file as the tracker registers it.
type Info struct {
	// Path is the file's slash-separated path below the origin's media
	// directory, without a leading slash: "films/a.mp4".
	Path        string `json:"path"`
	Size        int64  `json:"size"`
	PieceLength int64  `json:"piece_length"`
	// Pieces is the concatenation of the pieces' SHA-1 hashes, as in BEP 3.
	// JSON carries it as base64.
	Pieces []byte `json:"pieces"`
	// SHA256 is the whole file's SHA-256, lower-case hex.
	SHA256 string `json:"sha256"`
	// InfoHash is the BitTorrent v1 infohash of MetaInfo's info dictionary,
	// lower-case hex.
	InfoHash string `json:"infohash"`
	// ETag and ModTime identify the version of the file that was hashed, as
	// the origin sends them; a proxy uses ETag in If-Range so that a changed
	// file can never be mixed with the old one.
	ETag    string    `json:"etag"`
	ModTime time.Time `json:"mod_time"`
	// Origins are the base URLs ("http://host:port") of origins that serve
	// the file at /files/{Path}.
	Origins []string `json:"origins"`
	// Signature is the origin's Ed25519 signature over SignedBytes: the
	// tracker stores and returns it, but only the origin can make it.
	Signature []byte `json:"signature,omitempty"`
	// Peers is filled in by the tracker's answers only.
	Peers []Peer `json:"peers,omitempty"`
}

// Peer is one swarm member as the tracker last heard of it.
type Peer struct {
	IP   string `json:"ip"`
	Port int    `json:"port"`
}

// MaxPieces bounds how many pieces a file may have, so that a hostile info
// record cannot make a proxy allocate without limit.
const MaxPieces = 1 << 20

// PieceLengthFor picks the piece length for a file of the given size: small
// pieces keep the time to the first verified byte short and waste little
// around a seek, but every piece costs the swarm bookkeeping, so no file
// gets more than about 1024 of them (64 KiB pieces up to 64 MiB files; a
// 256 MiB file moved between two peers at 137-191 MB/s with 4096 pieces,
// 253-278 MB/s with 1024).
func PieceLengthFor(size int64) int64 {
	pl := int64(64 << 10)
	for pl < 16<<20 && size/pl > 1024 {
		pl *= 2
	}
	return pl
}

// NumPieces is how many pieces the file has.
func (fi *Info) NumPieces() int {
	if fi.PieceLength <= 0 {
		return 0
	}
	return int((fi.Size + fi.PieceLength - 1) / fi.PieceLength)
}

// PieceHash returns piece i's SHA-1.
func (fi *Info) PieceHash(i int) [sha1.Size]byte {
	var h [sha1.Size]byte
	copy(h[:], fi.Pieces[i*sha1.Size:])
	return h
}

// PieceBounds returns the byte offset and length of piece i.
func (fi *Info) PieceBounds(i int) (off, n int64) {
	off = int64(i) * fi.PieceLength
	return off, min(fi.PieceLength, fi.Size-off)
}

// TorrentName is the name in the info dictionary: the path's last element.
func (fi *Info) TorrentName() string {
	return path.Base(fi.Path)
}

// InfoDict is the BEP 3 single-file info dictionary, marked private
// (BEP 27): standard clients then find peers only through the tracker,
// which lists only peers holding a passkey, and never through DHT or PEX.
// The flag is inside the dictionary, so it is part of the infohash that
// the origin signs: everything that builds a torrent builds it here.
func (fi *Info) InfoDict() metainfo.Info {
	private := true
	return metainfo.Info{
		Name:        fi.TorrentName(),
		Length:      fi.Size,
		PieceLength: fi.PieceLength,
		Pieces:      fi.Pieces,
		Private:     &private,
	}
}

// ComputeInfoHash returns the infohash of InfoDict.
func (fi *Info) ComputeInfoHash() (metainfo.Hash, error) {
	b, err := bencode.Marshal(fi.InfoDict())
	if err != nil {
		return metainfo.Hash{}, fmt.Errorf("encode info dict: %w", err)
	}
	return metainfo.HashBytes(b), nil
}

// MetaInfo returns a standard .torrent: announce is the tracker's announce
// URL, and every origin becomes a BEP 19 web seed at /files/{Path}. More
// trackers' announce URLs make a BEP 12 announce-list of one tier, announce
// first: replicas that share their swarms, any of which will do.
func (fi *Info) MetaInfo(announce string, more ...string) (*metainfo.MetaInfo, error) {
	ib, err := bencode.Marshal(fi.InfoDict())
	if err != nil {
		return nil, fmt.Errorf("encode info dict: %w", err)
	}
	mi := &metainfo.MetaInfo{
		Announce:  announce,
		InfoBytes: ib,
		CreatedBy: "p2sp",
	}
	if len(more) > 0 {
		mi.AnnounceList = metainfo.AnnounceList{append([]string{announce}, more...)}
	}
	for _, o := range fi.Origins {
		mi.UrlList = append(mi.UrlList, FileURL(o, fi.Path))
	}
	return mi, nil
}

// FileURL is where origin base URL o serves path p.
func FileURL(origin, p string) string {
	return strings.TrimRight(origin, "/") + "/files/" + EscapePath(p)
}

// PasskeyHeader carries a passkey on the tracker's file-info requests:
// the peers of a swarm are listed only to its members (and the operator).
const PasskeyHeader = "X-P2sp-Passkey"

// AnnounceURL is the announce URL of the tracker at base URL tracker for
// passkey: /announce/<passkey>, the private-tracker form that any client
// (aria2c, transmission) uses as it is, or the bare /announce, which the
// tracker answers only with a failure saying that a passkey is needed.
func AnnounceURL(tracker, passkey string) string {
	if passkey == "" {
		return strings.TrimRight(tracker, "/") + "/announce"
	}
	return strings.TrimRight(tracker, "/") + "/announce/" + url.PathEscape(passkey)
}

// EscapePath escapes each element of a slash-separated path for a URL.
func EscapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// CleanPath turns a request's path into a registry key, refusing anything
// that could name a place outside the media tree (empty elements, ".",
// "..", backslashes and NUL bytes) and names that are not valid UTF-8: a
// key travels in JSON, which would replace the bad bytes and make it
// another name, so such a file could never be registered.
func CleanPath(p string) (string, error) {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return "", errors.New("empty path")
	}
	if len(p) > 1024 {
		return "", errors.New("path longer than 1024 bytes")
	}
	if strings.ContainsAny(p, "\\\x00") {
		return "", fmt.Errorf("path %q has a backslash or NUL", p)
	}
	if !utf8.ValidString(p) {
		return "", fmt.Errorf("path %q is not valid UTF-8", p)
	}
	for _, el := range strings.Split(p, "/") {
		switch el {
		case "", ".", "..":
			return "", fmt.Errorf("path %q has an empty, . or .. element", p)
		}
	}
	return p, nil
}

// Validate checks that the record is internally consistent: a path that
// stays inside the media tree, a piece count that matches the size, hashes of
// the right lengths and an infohash that matches the info dictionary.
func (fi *Info) Validate() error {
	if _, err := CleanPath(fi.Path); err != nil {
		return fmt.Errorf("file info: %w", err)
	}
	if fi.Size < 0 {
		return fmt.Errorf("file info %s: negative size %d", fi.Path, fi.Size)
	}
	if fi.PieceLength < 16<<10 || fi.PieceLength > 64<<20 || fi.PieceLength&(fi.PieceLength-1) != 0 {
		return fmt.Errorf("file info %s: piece length %d is not a power of two in [16KiB, 64MiB]", fi.Path, fi.PieceLength)
	}
	n := fi.NumPieces()
	if n > MaxPieces {
		return fmt.Errorf("file info %s: %d pieces, more than %d", fi.Path, n, MaxPieces)
	}
	if len(fi.Pieces) != n*sha1.Size {
		return fmt.Errorf("file info %s: %d bytes of piece hashes for %d pieces", fi.Path, len(fi.Pieces), n)
	}
	if b, err := hex.DecodeString(fi.SHA256); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("file info %s: sha256 %q is not 64 hex digits", fi.Path, fi.SHA256)
	}
	ih, err := fi.ComputeInfoHash()
	if err != nil {
		return err
	}
	if !strings.EqualFold(ih.HexString(), fi.InfoHash) {
		return fmt.Errorf("file info %s: infohash %q does not match its info dictionary (%s)", fi.Path, fi.InfoHash, ih.HexString())
	}
	for _, o := range fi.Origins {
		if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") {
			return fmt.Errorf("file info %s: origin %q is not an http(s) URL", fi.Path, o)
		}
	}
	return nil
}

// Equal reports whether two records describe the same bytes.
func (fi *Info) Equal(o *Info) bool {
	return fi.Size == o.Size && fi.PieceLength == o.PieceLength &&
		bytes.Equal(fi.Pieces, o.Pieces) && fi.SHA256 == o.SHA256
}
