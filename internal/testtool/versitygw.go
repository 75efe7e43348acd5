package testtool

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3 is an S3-compatible server a test started: versitygw over a
// temporary directory (its posix backend).
type S3 struct {
	// URL is the server's base URL, http://127.0.0.1:PORT.
	URL string
	// AccessKey and SecretKey are its one account's credentials.
	AccessKey, SecretKey string
	// Client talks to it with those credentials, path-style.
	Client *s3.Client
}

// StartS3 runs versitygw (go install
// github.com/versity/versitygw/cmd/versitygw@v1.8.0) for the test on a
// free loopback port, with fresh credentials and the given buckets
// created, and waits until it answers. The server is killed when the test
// ends. It skips without versitygw (fails in CI).
func StartS3(t testing.TB, buckets ...string) *S3 {
	t.Helper()
	bin := Require(t, "versitygw")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeLoopbackAddr(t).String()
	key := make([]byte, 20)
	rand.Read(key)
	s := &S3{URL: "http://" + addr, AccessKey: "p2sp" + hex.EncodeToString(key[:8]), SecretKey: hex.EncodeToString(key)}
	logFile, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", addr, "--quiet", "posix", root)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Any HTTP answer (403 to an unsigned request) means it is serving.
	hc := &http.Client{Timeout: time.Second}
	runUntilReady(t, cmd, 15*time.Second, func() bool {
		resp, err := hc.Get(s.URL + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, func() string {
		log, _ := os.ReadFile(logFile.Name())
		return string(log)
	})
	s.Client = s3.New(s3.Options{
		BaseEndpoint: aws.String(s.URL),
		Region:       "us-east-1",
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
	for _, b := range buckets {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := s.Client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)})
		cancel()
		if err != nil {
			t.Fatalf("create bucket %s: %v", b, err)
		}
	}
	return s
}

// Put writes data as object key of bucket.
func (s *S3) Put(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)}); err != nil {
		t.Fatalf("put s3://%s/%s: %v", bucket, key, err)
	}
}
