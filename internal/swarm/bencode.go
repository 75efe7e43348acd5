package swarm

import (
	"errors"
	"fmt"
	"strconv"
)

// maxDepth bounds how deeply lists and dictionaries may nest in an answer
// we decode. An announce answer needs three levels (the answer, the peer
// list, a peer); the library's decoder has no bound, and an answer of 20
// million nested lists overflowed the proxy's stack.
const maxDepth = 16

// errBencode is wrapped by every decoding error.
var errBencode = errors.New("malformed bencode")

// bdecoder reads bencode from a byte slice that the caller has already
// bounded in size. It never builds a tree of its own: the caller asks for
// the values it wants and skips the rest, so decoding costs no memory
// beyond the input, and nesting costs at most maxDepth stack frames.
type bdecoder struct {
	b     []byte
	i     int
	depth int
}

func (d *bdecoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w at byte %d: %s", errBencode, d.i, fmt.Sprintf(format, args...))
}

func (d *bdecoder) peek() (byte, error) {
	if d.i >= len(d.b) {
		return 0, d.errorf("unexpected end")
	}
	return d.b[d.i], nil
}

// int reads "i<digits>e".
func (d *bdecoder) int() (int64, error) {
	if c, err := d.peek(); err != nil || c != 'i' {
		return 0, d.errorf("want an integer")
	}
	end := d.index('e', d.i+1)
	if end < 0 {
		return 0, d.errorf("unterminated integer")
	}
	s := string(d.b[d.i+1 : end])
	if s == "" || s == "-0" || (len(s) > 1 && s[0] == '0') || (len(s) > 2 && s[0] == '-' && s[1] == '0') {
		return 0, d.errorf("integer %q is not canonical", s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, d.errorf("integer %q: %v", s, err)
	}
	d.i = end + 1
	return n, nil
}

// str reads "<len>:<bytes>" and returns the bytes, a slice of the input.
func (d *bdecoder) str() ([]byte, error) {
	if c, err := d.peek(); err != nil || c < '0' || c > '9' {
		return nil, d.errorf("want a string")
	}
	colon := d.index(':', d.i)
	if colon < 0 || colon-d.i > 10 {
		return nil, d.errorf("bad string length")
	}
	s := string(d.b[d.i:colon])
	n, err := strconv.Atoi(s)
	if err != nil || (len(s) > 1 && s[0] == '0') {
		return nil, d.errorf("bad string length %q", s)
	}
	if n > len(d.b)-colon-1 {
		return nil, d.errorf("string of %d bytes runs past the end", n)
	}
	d.i = colon + 1 + n
	return d.b[colon+1 : d.i], nil
}

// index finds c at or after from, or returns -1.
func (d *bdecoder) index(c byte, from int) int {
	for j := from; j < len(d.b); j++ {
		if d.b[j] == c {
			return j
		}
	}
	return -1
}

// container reads a list ('l') or dictionary ('d'), calling each for every
// element until the closing 'e'. each must consume exactly one value (for
// a dictionary: after the key, which it is given).
func (d *bdecoder) container(kind byte, each func(key []byte) error) error {
	if c, err := d.peek(); err != nil || c != kind {
		return d.errorf("want %q", kind)
	}
	if d.depth >= maxDepth {
		return d.errorf("nested deeper than %d", maxDepth)
	}
	d.depth++
	defer func() { d.depth-- }()
	d.i++
	for {
		c, err := d.peek()
		if err != nil {
			return err
		}
		if c == 'e' {
			d.i++
			return nil
		}
		var key []byte
		if kind == 'd' {
			if key, err = d.str(); err != nil {
				return err
			}
		}
		if err := each(key); err != nil {
			return err
		}
	}
}

func (d *bdecoder) list(each func() error) error {
	return d.container('l', func([]byte) error { return each() })
}

func (d *bdecoder) dict(each func(key []byte) error) error {
	return d.container('d', each)
}

// skip reads one value of any kind and discards it.
func (d *bdecoder) skip() error {
	c, err := d.peek()
	if err != nil {
		return err
	}
	switch {
	case c == 'i':
		_, err = d.int()
	case c >= '0' && c <= '9':
		_, err = d.str()
	case c == 'l':
		err = d.list(d.skip)
	case c == 'd':
		err = d.dict(func([]byte) error { return d.skip() })
	default:
		err = d.errorf("unexpected %q", c)
	}
	return err
}

// end checks that nothing follows the value read.
func (d *bdecoder) end() error {
	if d.i != len(d.b) {
		return d.errorf("%d bytes after the value", len(d.b)-d.i)
	}
	return nil
}
