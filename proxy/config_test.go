package proxy

import (
	"slices"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1 << 20, true},
		{"1GiB", 1 << 30, true},
		{"500MB", 500e6, true},
		{"64k", 64 << 10, true},
		{"1.5 GiB", 3 << 29, true},
		{" 2TB ", 2e12, true},
		{"", 0, false},
		{"GiB", 0, false},
		{"-1GiB", 0, false},
		{"12 parsecs", 0, false},
		{"1e30", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d (ok=%v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestBaseURLs(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []string // nil: an error
	}{
		{[]string{"http://a:1"}, []string{"http://a:1"}},
		{[]string{"http://a:1/"}, []string{"http://a:1"}},
		{[]string{"http://a:1", " https://b:2/ ", "http://c"}, []string{"http://a:1", "https://b:2", "http://c"}},
		{nil, nil},
		{[]string{"http://a:1", ""}, nil},
		{[]string{"http://a:1", "ftp://b"}, nil},
		{[]string{"http://a:1", "http://a:1/"}, nil},
		{[]string{"a:1"}, nil},
	} {
		got, err := baseURLs("origin", tc.in)
		if (err == nil) != (tc.want != nil) || !slices.Equal(got, tc.want) {
			t.Errorf("baseURLs(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
