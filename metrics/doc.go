// Package metrics defines every Prometheus collector p2sp exports, one
// struct per role (Origin, Tracker, Proxy), each registered on a registry
// the caller injects, so that two components in one process (the demo, the
// end-to-end tests) never share counters. Names follow Prometheus
// conventions (base units, _total on counters) and carry no unbounded
// labels: no paths, no peer addresses.
package metrics
