package fileinfo

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// hashBlock is how much Compute reads at once: whole pieces, at least 1 MiB.
func hashBlock(pieceLength int64) int64 { return max(pieceLength, 1<<20) }

// Compute reads size bytes from r once and returns the info of the file at
// path p: piece hashes, SHA-256 and infohash (which depends on p's last
// element). ETag, ModTime and Origins are the caller's to fill in. It stops
// early when ctx is cancelled.
//
// The SHA-256 runs on a second goroutine, fed block by block, while this one
// reads and computes the SHA-1s: on two cores hashing a file takes the time
// of the slower hash instead of the sum of both.
func Compute(ctx context.Context, p string, r io.Reader, size int64) (*Info, error) {
	fi := &Info{Path: p, Size: size, PieceLength: PieceLengthFor(size)}
	fi.Pieces = make([]byte, 0, fi.NumPieces()*sha1.Size)
	block := hashBlock(fi.PieceLength)

	// Three buffers circulate: one being read and SHA-1'd, up to two queued
	// for or inside the SHA-256 goroutine.
	const nbuf = 3
	free := make(chan []byte, nbuf)
	for range nbuf {
		free <- make([]byte, block)
	}
	full := make(chan []byte, nbuf)
	sum := make(chan []byte, 1)
	go func() {
		whole := sha256.New()
		for b := range full {
			whole.Write(b)
			free <- b[:cap(b)]
		}
		sum <- whole.Sum(nil)
	}()

	var err error
	for off := int64(0); off < size && err == nil; {
		if err = ctx.Err(); err != nil {
			err = fmt.Errorf("hash %s: %w", p, err)
			break
		}
		buf := (<-free)[:min(block, size-off)]
		if _, rerr := io.ReadFull(r, buf); rerr != nil {
			err = fmt.Errorf("hash %s at %d: %w", p, off, rerr)
			break
		}
		for b := buf; len(b) > 0; {
			n := min(int64(len(b)), fi.PieceLength)
			h := sha1.Sum(b[:n])
			fi.Pieces = append(fi.Pieces, h[:]...)
			b = b[n:]
		}
		full <- buf
		off += int64(len(buf))
	}
	close(full)
	whole := <-sum
	if err != nil {
		return nil, err
	}
	fi.SHA256 = hex.EncodeToString(whole)
	ih, err := fi.ComputeInfoHash()
	if err != nil {
		return nil, err
	}
	fi.InfoHash = ih.HexString()
	return fi, nil
}
