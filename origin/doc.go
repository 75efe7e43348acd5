// Package origin is the web server that holds the media: it serves every
// regular, non-hidden file of its media at /files/{path} with
// full HTTP range semantics (through internal/byterange), optionally under a
// cap on its total egress, and registers each file with the tracker.
//
// A background scanner walks the media directory at start and every scan
// interval; one hashing worker computes each new or changed file's
// fileinfo.Info (smallest files first, so one large file holds up nothing
// but itself) and POSTs it to the tracker, retrying on the next scan while
// the tracker is unreachable. Serving never waits for hashing.
//
// Proxies POST problem reports to /v1/reports; a report of a failed
// verification makes the origin rehash the file even if its size and
// modification time look unchanged.
//
// GET /v1/catalog lists the media, searchable by name (?q=) and paged
// (?offset=, ?limit=, X-Total-Count), with each audio or video file's
// duration where its container states it (MP4 and QuickTime movie header,
// WAV).
//
// With a data directory, the origin keeps each user's favourites and
// recently played list under /v1/users/{user}/: AddUser (the CLI's "p2sp
// origin user add") issues a user's bearer token, of which only the
// SHA-256 is stored, and a request may touch only its own user's lists.
//
// The media is a local directory (the default; also watched with inotify,
// watch.go) or a bucket of S3-compatible storage below a key prefix
// (Config.Media "s3://BUCKET/PREFIX", s3media.go), both behind the small
// media interface (media.go): list, stat, open for streaming and ranged
// reads. On a directory, every path is resolved inside an os.Root after
// fileinfo.CleanPath, so no request can read outside the media directory,
// whatever its encoding or the symlinks in the tree; on S3, only a clean
// path has a key, the prefix followed by that path.
package origin
