// Package failover decides which of several interchangeable upstreams (a
// proxy's origins, its trackers) a request tries, in what order, and how
// long one that failed is left alone. It holds no connections and does no
// I/O: the HTTP layer reports each outcome and asks for the next order.
package failover
