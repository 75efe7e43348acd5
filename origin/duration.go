package origin

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"
)

// maxBoxes bounds how many boxes or chunks a duration probe looks at, so a
// crafted file costs a few reads at most.
const maxBoxes = 64

// maxDurationCache bounds the duration cache; past it the cache starts
// over (entries of removed files would otherwise stay forever).
const maxDurationCache = 10000

// mediaDuration returns the duration of the media in r (size bytes) that
// the container states, for MP4/QuickTime (the movie header's duration)
// and WAV (data size over byte rate); 0 for other formats or when the
// container does not say.
func mediaDuration(r io.ReaderAt, size int64, name string) (time.Duration, error) {
	switch strings.ToLower(path.Ext(name)) {
	case ".mp4", ".m4v", ".m4a", ".mov":
		return mp4Duration(r, size)
	case ".wav":
		return wavDuration(r, size)
	}
	return 0, nil
}

// mp4Duration reads the duration in moov/mvhd (ISO/IEC 14496-12 8.2.2).
func mp4Duration(r io.ReaderAt, size int64) (time.Duration, error) {
	moov, moovSize, err := findBox(r, 0, size, "moov")
	if err != nil || moovSize == 0 {
		return 0, err
	}
	mvhd, mvhdSize, err := findBox(r, moov, moov+moovSize, "mvhd")
	if err != nil || mvhdSize == 0 {
		return 0, err
	}
	var b [32]byte
	n, err := r.ReadAt(b[:min(int64(len(b)), mvhdSize)], mvhd)
	if n < 20 {
		return 0, fmt.Errorf("mvhd: short read: %w", err)
	}
	var timescale uint32
	var units uint64
	switch b[0] { // version
	case 0:
		// version, flags, creation, modification, timescale, duration
		timescale = binary.BigEndian.Uint32(b[12:])
		d := binary.BigEndian.Uint32(b[16:])
		if d == ^uint32(0) {
			return 0, nil // "unknown"
		}
		units = uint64(d)
	case 1:
		if n < 32 {
			return 0, errors.New("mvhd: short version 1 box")
		}
		timescale = binary.BigEndian.Uint32(b[20:])
		units = binary.BigEndian.Uint64(b[24:])
		if units == ^uint64(0) {
			return 0, nil
		}
	default:
		return 0, fmt.Errorf("mvhd: unknown version %d", b[0])
	}
	if timescale == 0 {
		return 0, errors.New("mvhd: zero timescale")
	}
	return unitsToDuration(units, uint64(timescale)), nil
}

// findBox returns the payload offset and size of the first box of type
// typ among the boxes in [start, end); size 0 when there is none.
func findBox(r io.ReaderAt, start, end int64, typ string) (int64, int64, error) {
	off := start
	for range maxBoxes {
		if end-off < 8 {
			return 0, 0, nil
		}
		var h [16]byte
		if _, err := r.ReadAt(h[:8], off); err != nil {
			return 0, 0, fmt.Errorf("box header at %d: %w", off, err)
		}
		boxSize, hdr := int64(binary.BigEndian.Uint32(h[:4])), int64(8)
		switch boxSize {
		case 0: // to the end
			boxSize = end - off
		case 1: // 64-bit size follows the type
			if _, err := r.ReadAt(h[8:16], off+8); err != nil {
				return 0, 0, fmt.Errorf("box size at %d: %w", off, err)
			}
			u := binary.BigEndian.Uint64(h[8:16])
			if u > uint64(end-off) {
				return 0, 0, fmt.Errorf("box at %d overruns its parent", off)
			}
			boxSize, hdr = int64(u), 16
		}
		if boxSize < hdr || boxSize > end-off {
			return 0, 0, fmt.Errorf("box at %d has a bad size %d", off, boxSize)
		}
		if string(h[4:8]) == typ {
			return off + hdr, boxSize - hdr, nil
		}
		off += boxSize
	}
	return 0, 0, nil
}

// wavDuration reads a RIFF WAVE file's fmt and data chunks.
func wavDuration(r io.ReaderAt, size int64) (time.Duration, error) {
	var h [12]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return 0, fmt.Errorf("wav header: %w", err)
	}
	if !bytes.Equal(h[:4], []byte("RIFF")) || !bytes.Equal(h[8:12], []byte("WAVE")) {
		return 0, nil
	}
	var byteRate uint32
	off := int64(12)
	for range maxBoxes {
		if size-off < 8 {
			return 0, nil
		}
		var ch [16]byte
		if _, err := r.ReadAt(ch[:8], off); err != nil {
			return 0, fmt.Errorf("wav chunk at %d: %w", off, err)
		}
		n := int64(binary.LittleEndian.Uint32(ch[4:8]))
		switch string(ch[:4]) {
		case "fmt ":
			if n < 16 {
				return 0, errors.New("wav: short fmt chunk")
			}
			if _, err := r.ReadAt(ch[:16], off+8); err != nil {
				return 0, fmt.Errorf("wav fmt: %w", err)
			}
			byteRate = binary.LittleEndian.Uint32(ch[8:12])
		case "data":
			if byteRate == 0 {
				return 0, nil
			}
			// A streamed WAV may state a data size past the end.
			n = min(n, size-off-8)
			return unitsToDuration(uint64(n), uint64(byteRate)), nil
		}
		off += 8 + n + n&1 // chunks are padded to an even size
	}
	return 0, nil
}

// unitsToDuration is units/perSecond seconds, without overflow for any
// duration a time.Duration can hold.
func unitsToDuration(units, perSecond uint64) time.Duration {
	secs := units / perSecond
	if secs > uint64(time.Duration(1<<62)/time.Second) {
		return 0
	}
	frac := time.Duration(units%perSecond) * time.Second / time.Duration(perSecond)
	return time.Duration(secs)*time.Second + frac
}

// durationCache remembers probed durations by path and version.
type durationCache struct {
	mu sync.Mutex
	m  map[string]probed
}

type probed struct {
	etag string
	d    time.Duration
}

// get returns path's duration for the version etag, probing with probe
// (outside the lock) the first time. A failed probe is remembered as no
// duration, so a broken file is not reread on every listing.
func (dc *durationCache) get(path, etag string, probe func() (time.Duration, error)) (time.Duration, error) {
	dc.mu.Lock()
	p, ok := dc.m[path]
	dc.mu.Unlock()
	if ok && p.etag == etag {
		return p.d, nil
	}
	d, err := probe()
	dc.mu.Lock()
	if dc.m == nil || len(dc.m) >= maxDurationCache {
		dc.m = map[string]probed{}
	}
	dc.m[path] = probed{etag: etag, d: d}
	dc.mu.Unlock()
	return d, err
}
