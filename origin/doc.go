// Package origin is the web server that holds the media: it serves every
// regular, non-hidden file below its media directory at /files/{path} with
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
// Every path is resolved inside an os.Root after fileinfo.CleanPath, so no
// request can read outside the media directory, whatever its encoding or
// the symlinks in the tree.
package origin
