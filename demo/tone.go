package demo

import (
	"encoding/binary"
	"math"
	"time"
)

// toneRate is the sample rate of the demo tone: low, to keep it small.
const toneRate = 22050

// toneWAV returns a mono 16-bit PCM WAV file of a sine tone at freq Hz,
// fading in and out so that it starts and ends without a click.
func toneWAV(d time.Duration, freq float64) []byte {
	n := int(d.Seconds() * toneRate)
	fade := toneRate / 20
	b := make([]byte, 0, 44+2*n)
	b = append(b, "RIFF"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(36+2*n))
	b = append(b, "WAVEfmt "...)
	b = binary.LittleEndian.AppendUint32(b, 16)
	b = binary.LittleEndian.AppendUint16(b, 1) // PCM
	b = binary.LittleEndian.AppendUint16(b, 1) // mono
	b = binary.LittleEndian.AppendUint32(b, toneRate)
	b = binary.LittleEndian.AppendUint32(b, 2*toneRate) // byte rate
	b = binary.LittleEndian.AppendUint16(b, 2)          // block align
	b = binary.LittleEndian.AppendUint16(b, 16)         // bits per sample
	b = append(b, "data"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(2*n))
	for i := range n {
		gain := 0.3 * math.Min(1, float64(min(i, n-1-i))/float64(fade))
		v := gain * math.Sin(2*math.Pi*freq*float64(i)/toneRate)
		b = binary.LittleEndian.AppendUint16(b, uint16(int16(v*math.MaxInt16)))
	}
	return b
}
