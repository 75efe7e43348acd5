package origin

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"
)

// box is an ISO BMFF box.
func box(typ string, payload ...[]byte) []byte {
	body := bytes.Join(payload, nil)
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(body)))
	return append(append(b, typ...), body...)
}

// largeBox is a box with a 64-bit size.
func largeBox(typ string, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, 1)
	b = append(b, typ...)
	b = binary.BigEndian.AppendUint64(b, uint64(16+len(body)))
	return append(b, body...)
}

func mvhd0(timescale, duration uint32) []byte {
	p := make([]byte, 100)
	binary.BigEndian.PutUint32(p[12:], timescale)
	binary.BigEndian.PutUint32(p[16:], duration)
	return box("mvhd", p)
}

func mvhd1(timescale uint32, duration uint64) []byte {
	p := make([]byte, 112)
	p[0] = 1
	binary.BigEndian.PutUint32(p[20:], timescale)
	binary.BigEndian.PutUint64(p[24:], duration)
	return box("mvhd", p)
}

// wav is a PCM WAV header with an extra chunk before the data.
func wav(rate, channels, bytesPerSample int, samples int) []byte {
	fmtc := make([]byte, 16)
	binary.LittleEndian.PutUint16(fmtc[0:], 1)
	binary.LittleEndian.PutUint16(fmtc[2:], uint16(channels))
	binary.LittleEndian.PutUint32(fmtc[4:], uint32(rate))
	binary.LittleEndian.PutUint32(fmtc[8:], uint32(rate*channels*bytesPerSample))
	binary.LittleEndian.PutUint16(fmtc[12:], uint16(channels*bytesPerSample))
	binary.LittleEndian.PutUint16(fmtc[14:], uint16(8*bytesPerSample))
	chunk := func(id string, b []byte) []byte {
		out := append([]byte(id), binary.LittleEndian.AppendUint32(nil, uint32(len(b)))...)
		out = append(out, b...)
		if len(b)%2 == 1 {
			out = append(out, 0)
		}
		return out
	}
	body := append([]byte("WAVE"), chunk("fmt ", fmtc)...)
	body = append(body, chunk("LIST", []byte("odd"))...)
	body = append(body, chunk("data", make([]byte, samples*channels*bytesPerSample))...)
	return append(append([]byte("RIFF"), binary.LittleEndian.AppendUint32(nil, uint32(len(body)))...), body...)
}

func TestMediaDuration(t *testing.T) {
	ftyp := box("ftyp", []byte("isom\x00\x00\x02\x00isomiso2"))
	mdat := box("mdat", make([]byte, 1000))
	tests := []struct {
		name    string
		file    string
		data    []byte
		want    time.Duration
		wantErr bool
	}{
		{"moov first, version 0", "a.mp4", slices.Concat(ftyp, box("moov", mvhd0(1000, 20000)), mdat), 20 * time.Second, false},
		{"moov last, after other boxes in moov", "a.mov", slices.Concat(ftyp, mdat, box("moov", box("udta"), mvhd0(90000, 135000))), 1500 * time.Millisecond, false},
		{"version 1 after a 64-bit mdat", "a.m4a", slices.Concat(ftyp, largeBox("mdat", make([]byte, 50)), box("moov", mvhd1(48000, 48000*3600*3))), 3 * time.Hour, false},
		{"unknown duration", "a.mp4", slices.Concat(ftyp, box("moov", mvhd0(1000, ^uint32(0)))), 0, false},
		{"no moov", "a.mp4", slices.Concat(ftyp, mdat), 0, false},
		{"not an mp4", "a.mp4", []byte("hello, world, not a movie"), 0, true},
		{"box overruns the file", "a.mp4", slices.Concat(ftyp, box("moov", mvhd0(1000, 1000)))[:40], 0, true},
		{"zero timescale", "a.mp4", slices.Concat(ftyp, box("moov", mvhd0(0, 1000))), 0, true},
		{"wav", "tone.WAV", wav(8000, 2, 2, 8000*5/2), 2500 * time.Millisecond, false},
		{"not a wav", "x.wav", []byte("RIFX0000AVI LIST"), 0, false},
		{"other formats say nothing", "a.mp3", []byte("ID3..."), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mediaDuration(bytes.NewReader(tt.data), int64(len(tt.data)), tt.file)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("duration %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCatalogSearchAndPages(t *testing.T) {
	media := t.TempDir()
	for _, p := range []string{"films/Big Buck Bunny.mp4", "films/sintel.mkv", "music/Bunny Song.mp3", "music/tone.wav", "notes.txt"} {
		writeFile(t, media, p, []byte(p))
	}
	writeFile(t, media, "films/short.mp4", slices.Concat(box("ftyp", []byte("isom")), box("moov", mvhd0(600, 4500))))
	writeFile(t, media, "music/tone.wav", wav(22050, 1, 2, 22050*2))
	o := startOrigin(t, Config{Media: media})
	eventually(t, "catalog", func() bool { return len(o.catalog(t)) == 6 })

	tests := []struct {
		query  string
		status int
		want   []string
		total  int
	}{
		{"", 200, []string{"films/Big Buck Bunny.mp4", "films/short.mp4", "films/sintel.mkv", "music/Bunny Song.mp3", "music/tone.wav", "notes.txt"}, 6},
		{"q=bunny", 200, []string{"films/Big Buck Bunny.mp4", "music/Bunny Song.mp3"}, 2},
		{"q=BUNNY+films", 200, []string{"films/Big Buck Bunny.mp4"}, 1},
		{"q=nothing", 200, []string{}, 0},
		{"q=films&limit=2", 200, []string{"films/Big Buck Bunny.mp4", "films/short.mp4"}, 3},
		{"q=films&limit=2&offset=2", 200, []string{"films/sintel.mkv"}, 3},
		{"offset=10", 200, []string{}, 6},
		{"limit=0", 200, []string{}, 6},
		{"limit=-1", 400, nil, 0},
		{"offset=x", 400, nil, 0},
		{"limit=100000", 400, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			resp, body := get(t, http.MethodGet, o.url+"/v1/catalog?"+tt.query, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("%d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if tt.status != 200 {
				return
			}
			var got []CatalogEntry
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			paths := []string{}
			for _, e := range got {
				paths = append(paths, e.Path)
			}
			if !slices.Equal(paths, tt.want) {
				t.Errorf("paths %q, want %q", paths, tt.want)
			}
			if total := resp.Header.Get("X-Total-Count"); total != strconv.Itoa(tt.total) {
				t.Errorf("X-Total-Count %s, want %d", total, tt.total)
			}
		})
	}

	// Durations and types, where the container says.
	want := map[string]struct {
		typ string
		dur float64
	}{
		"films/short.mp4":          {"video/mp4", 7.5},
		"music/tone.wav":           {"audio/wav", 2},
		"films/Big Buck Bunny.mp4": {"video/mp4", 0}, // not a real MP4
	}
	for _, e := range o.catalog(t) {
		w, ok := want[e.Path]
		if !ok {
			continue
		}
		if e.ContentType != w.typ || e.Duration != w.dur {
			t.Errorf("%s: type %q duration %v, want %q %v", e.Path, e.ContentType, e.Duration, w.typ, w.dur)
		}
	}
}
