package fileinfo

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// Compute reads size bytes from r once and returns the info of the file at
// path p: piece hashes, SHA-256 and infohash (which depends on p's last
// element). ETag, ModTime and Origins are the caller's to fill in. It stops
// early when ctx is cancelled.
func Compute(ctx context.Context, p string, r io.Reader, size int64) (*Info, error) {
	fi := &Info{Path: p, Size: size, PieceLength: PieceLengthFor(size)}
	whole := sha256.New()
	buf := make([]byte, fi.PieceLength)
	fi.Pieces = make([]byte, 0, fi.NumPieces()*sha1.Size)
	for off := int64(0); off < size; off += fi.PieceLength {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("hash %s: %w", p, err)
		}
		n := min(fi.PieceLength, size-off)
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return nil, fmt.Errorf("hash %s at %d: %w", p, off, err)
		}
		h := sha1.Sum(buf[:n])
		fi.Pieces = append(fi.Pieces, h[:]...)
		whole.Write(buf[:n])
	}
	fi.SHA256 = hex.EncodeToString(whole.Sum(nil))
	ih, err := fi.ComputeInfoHash()
	if err != nil {
		return nil, err
	}
	fi.InfoHash = ih.HexString()
	return fi, nil
}
