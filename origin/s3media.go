package origin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// S3Config says how to reach the S3-compatible storage of a Media of the
// form "s3://BUCKET/PREFIX". Empty fields come from the AWS SDK's usual
// sources: AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and
// AWS_SESSION_TOKEN), AWS_ENDPOINT_URL_S3, the shared config files.
type S3Config struct {
	// Endpoint is the storage's base URL, e.g. "http://versitygw:7070";
	// "" is AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS's own for
	// the region. With an endpoint, buckets are
	// addressed by path (http://host/BUCKET/KEY), which every
	// S3-compatible server understands without wildcard DNS.
	Endpoint string
	// Region defaults to the SDK's (AWS_REGION), else "us-east-1".
	Region string
	// AccessKeyID and SecretAccessKey, when both set, are used instead of
	// the SDK's credential chain.
	AccessKeyID     string
	SecretAccessKey string
}

// s3Scheme starts a Media that names object storage.
const s3Scheme = "s3://"

// parseS3Media splits "s3://BUCKET/PREFIX" into the bucket and the key
// prefix every media path is appended to ("" or ending in "/").
func parseS3Media(m string) (bucket, prefix string, err error) {
	rest := strings.TrimPrefix(m, s3Scheme)
	bucket, prefix, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("origin: media %q names no bucket (want s3://BUCKET/PREFIX)", m)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		if _, err := fileinfo.CleanPath(prefix); err != nil {
			return "", "", fmt.Errorf("origin: media %q: prefix: %w", m, err)
		}
		prefix += "/"
	}
	return bucket, prefix, nil
}

// How an S3 object is read: sequential reads stream ranged GETs whose
// length doubles from s3MinWindow to s3MaxWindow while the reader goes on
// (one request per window, never the object in memory); ReadAt reads
// whole s3Chunk-aligned chunks and keeps the last one, so that the small
// reads of a multipart answer or a container probe cost one request a
// chunk, not one a read.
const (
	s3MinWindow = 1 << 20
	s3MaxWindow = 16 << 20
	s3Chunk     = 1 << 20
)

// s3Media is a bucket (below a key prefix) of S3-compatible storage. The
// object ETag is the change detector: a version's tag, and the If-Match
// of every GET of an opened object, so that a read never mixes versions.
// An object without an ETag (a file a gateway serves from its backing
// directory without having written it, as versitygw's posix backend
// does) is told apart by its size and modification time only, as the
// hash's check after reading does.
type s3Media struct {
	client *s3.Client
	bucket string
	prefix string
	name   string
}

func openS3Media(m string, sc S3Config) (*s3Media, error) {
	bucket, prefix, err := parseS3Media(m)
	if err != nil {
		return nil, err
	}
	// Read here rather than by the SDK, so that such an endpoint is
	// addressed by path too.
	sc.Endpoint = cmp.Or(sc.Endpoint, os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL"))
	if sc.Endpoint != "" {
		if u, err := url.Parse(sc.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("origin: S3 endpoint %q is not an http(s) URL", sc.Endpoint)
		}
	}
	// The body of a GET streams for as long as a player reads, so only
	// connecting and the answer's header are bounded, not the request.
	hc := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = 5 * time.Second }).
		WithTransportOptions(func(t *http.Transport) {
			t.ResponseHeaderTimeout = 15 * time.Second
			t.MaxIdleConnsPerHost = 16
		})
	opts := []func(*config.LoadOptions) error{config.WithHTTPClient(hc)}
	if sc.Region != "" {
		opts = append(opts, config.WithRegion(sc.Region))
	}
	if sc.AccessKeyID != "" && sc.SecretAccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(sc.AccessKeyID, sc.SecretAccessKey, "")))
	}
	// Loading reads the environment and the shared config files; it
	// only reaches the network for credentials, when a request needs them.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("origin: S3 configuration: %w", err)
	}
	if acfg.Region == "" {
		acfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(acfg, func(o *s3.Options) {
		// A ranged GET has no whole-object checksum to validate (the
		// proxies check every piece's SHA-1), and the SDK would log that
		// once a GET.
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.DisableLogOutputChecksumValidationSkipped = true
		if sc.Endpoint != "" {
			o.BaseEndpoint = aws.String(sc.Endpoint)
			o.UsePathStyle = true
		}
	})
	return &s3Media{client: client, bucket: bucket, prefix: prefix, name: s3Scheme + bucket + "/" + prefix}, nil
}

func (m *s3Media) String() string { return m.name }

func (m *s3Media) Close() error { return nil }

// key is the object key of media path p. Only a clean path has one: no
// empty, "." or ".." element can take a key out of the prefix on a
// gateway that maps keys to file names.
func (m *s3Media) key(p string) (string, error) {
	if c, err := fileinfo.CleanPath(p); err != nil || c != p {
		return "", fmt.Errorf("media path %q: %w", p, fs.ErrNotExist)
	}
	return m.prefix + p, nil
}

// list lists every object below the prefix; a key ending in "/" is a
// folder marker, not a file.
func (m *s3Media) list(ctx context.Context, fn func(string, version)) error {
	pages := s3.NewListObjectsV2Paginator(m.client, &s3.ListObjectsV2Input{Bucket: &m.bucket, Prefix: aws.String(m.prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %s: %w", m.name, err)
		}
		for _, o := range page.Contents {
			name := strings.TrimPrefix(aws.ToString(o.Key), m.prefix)
			if name == "" || strings.HasSuffix(name, "/") {
				continue
			}
			fn(name, s3Version(aws.ToInt64(o.Size), aws.ToTime(o.LastModified), aws.ToString(o.ETag)))
		}
	}
	return nil
}

func (m *s3Media) stat(ctx context.Context, p string) (version, error) {
	key, err := m.key(p)
	if err != nil {
		return version{}, err
	}
	out, err := m.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &m.bucket, Key: &key})
	if err != nil {
		return version{}, fmt.Errorf("stat %s: %w", p, s3Error(err))
	}
	return s3Version(aws.ToInt64(out.ContentLength), aws.ToTime(out.LastModified), aws.ToString(out.ETag)), nil
}

func (m *s3Media) open(ctx context.Context, p string) (mediaFile, version, error) {
	v, err := m.stat(ctx, p)
	if err != nil {
		return nil, version{}, err
	}
	key, _ := m.key(p)
	return &s3Object{ctx: ctx, m: m, key: key, v: v, limit: v.size}, v, nil
}

func s3Version(size int64, mod time.Time, etag string) version {
	return version{size: size, modTime: mod, tag: etag}
}

// errChanged says an object's ETag is no longer the one it was opened
// with.
var errChanged = errors.New("object changed since it was opened")

// s3Error maps the storage's answers the origin acts on to its own: 404
// to fs.ErrNotExist, 412 to errChanged.
func s3Error(err error) error {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", fs.ErrNotExist, err)
		case http.StatusPreconditionFailed:
			return fmt.Errorf("%w: %w", errChanged, err)
		}
	}
	return err
}

// s3Object is one version of an object, opened with the context of the
// request (or hash) that reads it. It is not safe for concurrent Reads;
// ReadAt may be called concurrently.
type s3Object struct {
	ctx context.Context
	m   *s3Media
	key string
	v   version

	// Sequential reads: pos is the reader's offset; body streams bytes
	// [bodyPos, bodyEnd) of the object; limit is where reads are known to
	// stop (readLimiter).
	pos, limit       int64
	body             io.ReadCloser
	bodyPos, bodyEnd int64
	window           int64

	// ReadAt's last chunk, of bytes [chunkOff, chunkOff+len(chunk)).
	mu       sync.Mutex
	chunk    []byte
	chunkOff int64
}

var _ readLimiter = (*s3Object)(nil)

// get opens bytes [off, end) of the object's version.
func (o *s3Object) get(off, end int64) (io.ReadCloser, error) {
	in := &s3.GetObjectInput{
		Bucket: &o.m.bucket,
		Key:    &o.key,
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", off, end-1)),
	}
	if o.v.tag != "" {
		in.IfMatch = aws.String(o.v.tag)
	}
	out, err := o.m.client.GetObject(o.ctx, in)
	if err != nil {
		return nil, fmt.Errorf("get %s bytes %d-%d: %w", o.key, off, end-1, s3Error(err))
	}
	return out.Body, nil
}

func (o *s3Object) limitReads(end int64) { o.limit = min(max(end, o.pos), o.v.size) }

func (o *s3Object) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += o.pos
	case io.SeekEnd:
		offset += o.v.size
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	o.pos = offset
	o.limit = o.v.size
	return offset, nil
}

func (o *s3Object) Read(p []byte) (int, error) {
	if o.pos >= o.v.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if o.body != nil && (o.bodyPos != o.pos || o.bodyPos >= o.bodyEnd) {
		// A seek away from the stream, or its window is done.
		o.closeBody()
	}
	if o.body == nil {
		if o.bodyEnd != o.pos {
			o.window = 0 // not a continuation: start small again
		}
		o.window = min(max(2*o.window, s3MinWindow), s3MaxWindow)
		end := min(o.pos+o.window, o.v.size)
		if o.limit > o.pos {
			end = min(end, o.limit)
		}
		body, err := o.get(o.pos, end)
		if err != nil {
			return 0, err
		}
		o.body, o.bodyPos, o.bodyEnd = body, o.pos, end
	}
	n, err := o.body.Read(p[:min(int64(len(p)), o.bodyEnd-o.bodyPos)])
	o.bodyPos += int64(n)
	o.pos += int64(n)
	switch {
	case err == io.EOF && o.bodyPos < o.bodyEnd:
		return n, fmt.Errorf("get %s: body ended at %d of %d: %w", o.key, o.bodyPos, o.bodyEnd, io.ErrUnexpectedEOF)
	case err == io.EOF || (err == nil && o.bodyPos >= o.bodyEnd):
		o.closeBody()
		return n, nil
	case err != nil:
		return n, fmt.Errorf("get %s: %w", o.key, s3Error(err))
	}
	return n, nil
}

func (o *s3Object) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("read at a negative offset")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for n < len(p) {
		at := off + int64(n)
		if at >= o.v.size {
			return n, io.EOF
		}
		if at < o.chunkOff || at >= o.chunkOff+int64(len(o.chunk)) {
			if err := o.fetchChunk(at - at%s3Chunk); err != nil {
				return n, err
			}
		}
		n += copy(p[n:], o.chunk[at-o.chunkOff:])
	}
	return n, nil
}

// fetchChunk reads the chunk at off into o.chunk, reusing its buffer.
func (o *s3Object) fetchChunk(off int64) error {
	end := min(off+s3Chunk, o.v.size)
	o.chunk = o.chunk[:0]
	body, err := o.get(off, end)
	if err != nil {
		return err
	}
	defer body.Close()
	if cap(o.chunk) < int(end-off) {
		o.chunk = make([]byte, 0, s3Chunk)
	}
	buf := o.chunk[:end-off]
	if _, err := io.ReadFull(body, buf); err != nil {
		return fmt.Errorf("get %s bytes %d-%d: %w", o.key, off, end-1, s3Error(err))
	}
	o.chunk, o.chunkOff = buf, off
	return nil
}

func (o *s3Object) closeBody() {
	if o.body != nil {
		o.body.Close()
		o.body = nil
	}
}

func (o *s3Object) Close() error {
	o.closeBody()
	o.chunk = nil
	return nil
}
