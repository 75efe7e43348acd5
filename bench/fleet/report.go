package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// idealCrowd is the ideal flash-crowd time with the origin at full
// speed throughout: max(F/down, F/origin, N·F/(origin + N·up)).
func idealCrowd(o options) time.Duration {
	f, n := float64(o.size), float64(o.n)
	up, down, origin := o.up.BytesPerSecond(), o.down.BytesPerSecond(), float64(o.originRate)
	sec := max(f/down, f/origin, n*f/(origin+n*up))
	return time.Duration(sec * float64(time.Second))
}

// quantile is the q-quantile of xs by the nearest-rank method; 0 if empty.
func quantile[T int | int64 | time.Duration](xs []T, q float64) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// summary is the figures of one run, computed from its result.
type summary struct {
	needed, origin      int64
	copies, viewersWrth float64
	completion          []time.Duration
	ttfbFirst, ttfbSeek []time.Duration
	stalls, stalled     int
	stallTime           time.Duration
	peerShare           float64
	wireRatio, pieceRat float64
	cpu                 []time.Duration
	cpuPer100MB         float64
	rss                 []int64
	conns, peers        []int
	slowLogs            int
}

func summarize(r *result) summary {
	var s summary
	var served, peer, wire, pieces, moved int64
	var cpu time.Duration
	for _, segs := range r.Players {
		stalledHere := false
		for j, seg := range segs {
			s.needed += seg.Length
			if seg.Err != "" {
				continue
			}
			if j == 0 {
				s.ttfbFirst = append(s.ttfbFirst, seg.TTFB)
			} else {
				s.ttfbSeek = append(s.ttfbSeek, seg.TTFB)
			}
			s.stalls += seg.Stalls
			s.stallTime += seg.StallTime
			stalledHere = stalledHere || seg.Stalls > 0
		}
		if len(segs) == 1 && segs[0].Err == "" {
			s.completion = append(s.completion, segs[0].Duration)
		}
		if stalledHere {
			s.stalled++
		}
	}
	for _, p := range r.Proxies {
		served += p.Totals.PeerBytes + p.Totals.OriginBytes + p.Totals.CacheBytes
		peer += p.Totals.PeerBytes
		wire += p.Wire.Received
		moved += p.Wire.Received + p.Wire.Sent
		// What every proxy uploaded is what the others received from
		// peers.
		pieces += p.Totals.OriginFetched + p.Totals.Uploaded
		cpu += p.CPU
		s.cpu = append(s.cpu, p.CPU)
		s.rss = append(s.rss, p.PeakRSS)
		s.conns = append(s.conns, p.MaxConns)
		s.peers = append(s.peers, p.MaxPeers)
		s.slowLogs += p.SlowLogs
	}
	s.origin = r.OriginSent
	s.copies = float64(r.OriginSent) / float64(r.Size)
	if s.needed > 0 {
		s.viewersWrth = float64(r.OriginSent) / (float64(s.needed) / float64(r.N))
		s.wireRatio = float64(wire) / float64(s.needed)
		s.pieceRat = float64(pieces) / float64(s.needed)
	}
	if served > 0 {
		s.peerShare = float64(peer) / float64(served)
	}
	if moved > 0 {
		s.cpuPer100MB = cpu.Seconds() / (float64(moved) / 100e6)
	}
	return s
}

func printReport(w io.Writer, o options, r *result) {
	s := summarize(r)
	fmt.Fprintf(w, "\nfleet: scenario %s, N=%d, file %s, origin %s, client links %s up / %s down (tbf)",
		r.Scenario, r.N, mb(r.Size), mbit(float64(o.originRate)*8), mbit(float64(o.up.Bits)), mbit(float64(o.down.Bits)))
	if r.Scenario != "crowd" {
		fmt.Fprintf(w, ", %s per viewer, a viewer joining every %s", mbit(o.bitrate), o.join)
	}
	fmt.Fprintf(w, "\n\n| measurement | value |\n|---|---:|\n")
	row := func(k, format string, a ...any) { fmt.Fprintf(w, "| %s | "+format+" |\n", append([]any{k}, a...)...) }
	row("reads byte-identical (SHA-256)", "%d / %d", r.Identical, r.Segments)
	row("bytes the players needed", "%s (%s per player)", mb(s.needed), mb(s.needed/int64(r.N)))
	row("origin egress", "%s = %.2f copies = %.2f viewers' worth", mb(s.origin), s.copies, s.viewersWrth)
	if r.Scenario == "crowd" {
		row("completion median / p95 / max", "%s / %s / %s", secs(quantile(s.completion, .5)), secs(quantile(s.completion, .95)), secs(slices.Max(append(s.completion, 0))))
		row("ideal: max(F/down, F/origin, N·F/(origin+N·up))", "%s", secs(r.Ideal))
	}
	if len(r.OriginRate) > 0 {
		steps := make([]string, len(r.OriginRate))
		for i, v := range r.OriginRate {
			steps[i] = fmt.Sprintf("%.1f", v/1e6)
		}
		row(fmt.Sprintf("origin egress per %s from the start, MB/s", originStep), "%s", strings.Join(steps, " "))
	}
	row("stalls (reads > 1 s past their deadline)", "%d in %d of %d players, %s late in all", s.stalls, s.stalled, r.N, secs(s.stallTime))
	row("TTFB first request p50 / p95 / max", "%s / %s / %s", ms(quantile(s.ttfbFirst, .5)), ms(quantile(s.ttfbFirst, .95)), ms(slices.Max(append(s.ttfbFirst, 0))))
	if len(s.ttfbSeek) > 0 {
		row("TTFB after a seek p50 / p95 / max", "%s / %s / %s", ms(quantile(s.ttfbSeek, .5)), ms(quantile(s.ttfbSeek, .95)), ms(slices.Max(s.ttfbSeek)))
	}
	row("peer share of bytes served to players", "%.1f%%", 100*s.peerShare)
	row("client downlink bytes / bytes needed (wire, headers incl.)", "%.2f", s.wireRatio)
	row("piece data received (origin + peers) / bytes needed", "%.2f", s.pieceRat)
	row("proxy CPU median / max", "%s / %s (%.2f s per 100 MB moved)", secs(quantile(s.cpu, .5)), secs(slices.Max(s.cpu)), s.cpuPer100MB)
	row("proxy peak RSS median / max", "%s / %s", mb(quantile(s.rss, .5)), mb(slices.Max(s.rss)))
	row("BitTorrent connections per proxy median / max (distinct peers)", "%d / %d (%d / %d)", quantile(s.conns, .5), slices.Max(s.conns), quantile(s.peers, .5), slices.Max(s.peers))
	row(`library "took a long time" warnings`, "%d", s.slowLogs)
	row("wall time of the scenario", "%s", secs(r.Wall))
	if o.perProxy {
		fmt.Fprintf(w, "\n| proxy | from origin | uploaded | peer share | downlink | CPU | peak RSS | BT conns (peers) |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for i, p := range r.Proxies {
			t := p.Totals
			share := 0.0
			if all := t.PeerBytes + t.OriginBytes + t.CacheBytes; all > 0 {
				share = float64(t.PeerBytes) / float64(all)
			}
			fmt.Fprintf(w, "| %d | %s | %s | %.1f%% | %s | %s | %s | %d (%d) |\n", i+1, mb(t.OriginFetched), mb(t.Uploaded),
				100*share, mb(p.Wire.Received), secs(p.CPU), mb(p.PeakRSS), p.MaxConns, p.MaxPeers)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nerror: %s", e)
	}
	fmt.Fprintln(w)
}

func mb(b int64) string           { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }
func mbit(bits float64) string    { return fmt.Sprintf("%g Mbit/s", bits/1e6) }
func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
func ms(d time.Duration) string   { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
