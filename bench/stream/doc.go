// Command stream is the streaming benchmark of issue 5: it starts the real
// system on 127.0.0.1 (tracker and origin in process through package demo,
// proxies as child processes of a built p2sp binary, so that a proxy's RSS
// is its own) and prints one Markdown table that puts the proxy beside a
// direct range request to the origin: time to the first MiB, cold and warm
// seeks, throughput from a peer with the origin stopped, and the proxy's
// peak RSS while it streams a large file to a slow reader.
//
// Run it through bench/stream.sh, which builds the binary first:
//
//	bench/stream.sh          # the full benchmark, a few minutes
//	bench/stream.sh -quick   # smaller files, a fast check
//	bench/stream.sh -wan     # origin and tracker 50 ms away (toxiproxy), peers beside aria2c
//	bench/stream.sh -peers   # only the peer rows of -wan: proxy → proxy beside aria2c
//	bench/stream.sh -peers -perf DIR   # and `perf record` both proxies meanwhile
//
// Progress goes to stderr, the table to stdout. It asserts nothing about
// speed: a row that misses its target says FAIL, and the exit status is
// non-zero only when something went wrong (wrong bytes, an error, a hang).
package main
