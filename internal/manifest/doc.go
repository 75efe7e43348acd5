// Package manifest recognises HLS playlists and DASH manifests and decides
// how long a proxy may answer from its copy of one. A live manifest changes
// every few seconds (the encoder appends segments and drops old ones): a
// copy of it is stale as soon as the origin writes again, so every request
// for it is revalidated with the origin. An on-demand manifest
// (#EXT-X-ENDLIST or #EXT-X-PLAYLIST-TYPE:VOD in HLS, type="static" in
// DASH) never changes and may be kept like any file. Everything here is
// pure: the proxy's HTTP layer fetches and serves, this package decides.
package manifest
