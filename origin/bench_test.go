package origin

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkHash hashes a 256 MiB file through the worker's code path
// (os.Root, fileinfo.Compute, the re-stat); the MB/s it reports is the
// origin's hashing throughput, page cache warm.
func BenchmarkHash(b *testing.B) {
	const size = 256 << 20
	dir := b.TempDir()
	f, err := os.Create(dir + "/big.bin")
	if err != nil {
		b.Fatal(err)
	}
	chunk := randomBytes(1<<20, 42)
	for range size / len(chunk) {
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	m, err := openLocalMedia(dir, slog.Default())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	hashed := prometheus.NewCounter(prometheus.CounterOpts{Name: "hashed"})
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := hashFile(context.Background(), m, "big.bin", hashed); err != nil {
			b.Fatal(err)
		}
	}
}
