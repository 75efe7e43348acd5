package proxy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/p2sp/p2sp/internal/failover"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpclient"
)

// errUnknownFile is the tracker's 404: the file is not registered (yet).
var errUnknownFile = errors.New("file not registered with the tracker")

// trackerClient asks the trackers for file info, in turn (BEP 12): the
// first that answers, one that did not answer lately last.
type trackerClient struct {
	bases   []string
	health  *failover.Set
	passkey string // the tracker lists a swarm's peers to its members only
	client  *http.Client
	trust   *trust
}

// fileInfo asks the trackers for a file's info until one has it and its
// answer is trusted. Not registered, or refused, from every tracker that
// answered is the error that says most: refused over not registered over
// no answer.
func (tc *trackerClient) fileInfo(ctx context.Context, path string) (*fileinfo.Info, error) {
	var refused, unknown, last error
	for _, i := range tc.health.Order(time.Now()) {
		fi, err := tc.fileInfoFrom(ctx, tc.bases[i], path)
		switch {
		case err == nil:
			tc.health.OK(i)
			return fi, nil
		case ctx.Err() != nil:
			return nil, err
		case errors.Is(err, errUntrusted):
			tc.health.OK(i)
			refused = err
		case errors.Is(err, errUnknownFile):
			tc.health.OK(i)
			unknown = err
		default:
			tc.health.Failed(i, time.Now())
			last = err
		}
	}
	return nil, cmp.Or(refused, unknown, last)
}

// lookupTimeout bounds a tracker lookup: the player is waiting.
const lookupTimeout = 3 * time.Second

// maxInfoAnswer bounds a file-info answer: the tracker accepts
// registrations of up to 8 MiB, and the peers it adds are a few KiB.
const maxInfoAnswer = 9 << 20

// streamEvents long-polls GET /v1/streams/DIR for the live stream's events
// after the cursor after. A stream's events live in one tracker's memory:
// it asks the first tracker that is not passed over (a cursor from another
// is answered from its start).
func (tc *trackerClient) streamEvents(ctx context.Context, dir, after string) (*liveEvents, error) {
	u := tc.bases[tc.health.Order(time.Now())[0]] + "/v1/streams/" + fileinfo.EscapePath(dir)
	if after != "" {
		u += "?after=" + url.QueryEscape(after)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("stream poll %s: %w", dir, err)
	}
	resp, err := tc.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("stream poll %s: %w", dir, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("stream poll %s: tracker answered %s", dir, resp.Status)
	}
	var ev liveEvents
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxLiveAnswer)).Decode(&ev); err != nil {
		return nil, fmt.Errorf("stream poll %s: decode: %w", dir, err)
	}
	return &ev, nil
}

// fileInfoFrom fetches and validates a file's info, with its current
// peers, from the tracker at base, and checks the origin's signature over
// it.
func (tc *trackerClient) fileInfoFrom(ctx context.Context, base, path string) (*fileinfo.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/files/"+fileinfo.EscapePath(path), nil)
	if err != nil {
		return nil, fmt.Errorf("tracker lookup %s: %w", path, err)
	}
	if tc.passkey != "" {
		req.Header.Set(fileinfo.PasskeyHeader, tc.passkey)
	}
	resp, err := tc.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("tracker lookup %s: %w", path, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("tracker lookup %s: %w", path, errUnknownFile)
	default:
		return nil, fmt.Errorf("tracker lookup %s: tracker answered %s", path, resp.Status)
	}
	var fi fileinfo.Info
	if err := httpclient.DecodeJSON(resp, maxInfoAnswer, &fi); err != nil {
		return nil, fmt.Errorf("tracker lookup %s: %w: %w", path, errUntrusted, err)
	}
	if err := fi.Validate(); err != nil {
		return nil, fmt.Errorf("tracker lookup %s: %w: %w", path, errUntrusted, err)
	}
	if fi.Path != path {
		return nil, fmt.Errorf("tracker lookup %s: %w: answered for %q", path, errUntrusted, fi.Path)
	}
	// Only the origin says what a file's bytes are: the tracker, or
	// anyone between it and us, can only pass its signature on.
	if err := tc.trust.verify(ctx, &fi); err != nil {
		return nil, fmt.Errorf("tracker lookup %s: %w", path, err)
	}
	return &fi, nil
}

// reporter sends reports to the tracker and the origin, at most one per
// kind and path a minute, in the background.
type reporter struct {
	targets []string
	client  *http.Client
	// origins, user and token: reports to an origin carry the user's
	// credential, if any, so that they count as that user's (see
	// fileinfo.ReportUserHeader); the trackers never see it.
	origins     []string
	user, token string
	log         *slog.Logger
	wg          *sync.WaitGroup
	ctx         context.Context

	mu   sync.Mutex
	last map[[2]string]time.Time
}

const (
	reportEvery = time.Minute
	// maxReportKeys bounds the kinds and paths reported within a minute;
	// reports beyond it are dropped until older ones age out.
	maxReportKeys = 1024
)

func (r *reporter) send(rep fileinfo.Report) {
	key := [2]string{rep.Kind, rep.Path}
	r.mu.Lock()
	if t, ok := r.last[key]; ok && time.Since(t) < reportEvery {
		r.mu.Unlock()
		return
	}
	if len(r.last) >= maxReportKeys {
		forgetOlder(r.last, reportEvery)
	}
	if len(r.last) >= maxReportKeys {
		r.mu.Unlock()
		r.log.Debug("report dropped: too many reports this minute", "kind", rep.Kind, "path", rep.Path)
		return
	}
	r.last[key] = time.Now()
	r.mu.Unlock()
	if len(rep.Detail) > fileinfo.MaxReportDetail {
		rep.Detail = rep.Detail[:fileinfo.MaxReportDetail]
	}
	body, err := json.Marshal(rep)
	if err != nil {
		r.log.Error("encode report", "err", err)
		return
	}
	r.log.Warn("reporting", "kind", rep.Kind, "path", rep.Path, "detail", rep.Detail)
	for _, base := range r.targets {
		r.wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
			defer cancel()
			if err := r.post(ctx, base+"/v1/reports", body); err != nil {
				r.log.Warn("report not delivered", "to", base, "err", err)
			}
		})
	}
}

func (r *reporter) post(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("post %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if r.user != "" && slices.ContainsFunc(r.origins, func(o string) bool { return strings.HasPrefix(url, o+"/") }) {
		req.Header.Set(fileinfo.ReportUserHeader, r.user)
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", url, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("post %s: %s", url, resp.Status)
	}
	return nil
}

// forgetOlder deletes the times in m older than age: they say no more than
// an absent key does.
func forgetOlder[K comparable](m map[K]time.Time, age time.Duration) {
	for k, t := range m {
		if time.Since(t) >= age {
			delete(m, k)
		}
	}
}
