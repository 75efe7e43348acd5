package origin

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2sp/p2sp/internal/testtool"
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

// BenchmarkHashS3 hashes a 64 MiB object on versitygw (loopback, its
// posix backend on the test's disk) through the same code path: the MB/s
// it reports is what the S3 media's streaming GETs deliver to the hasher,
// which is also how a served range reads.
func BenchmarkHashS3(b *testing.B) {
	const size = 64 << 20
	srv := testtool.StartS3(b, "media")
	srv.Put(b, "media", "films/big.bin", randomBytes(size, 42))
	m, err := openS3Media("s3://media/films", S3Config{Endpoint: srv.URL, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	if err != nil {
		b.Fatal(err)
	}
	hashed := prometheus.NewCounter(prometheus.CounterOpts{Name: "hashed"})
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := hashFile(b.Context(), m, "big.bin", hashed); err != nil {
			b.Fatal(err)
		}
	}
}
