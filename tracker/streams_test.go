package tracker

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestStreamPoll: a watcher of a directory that polls with its cursor is
// answered the moment a file of that directory is registered, with that
// path only; re-registering the same bytes, or a file elsewhere, wakes
// nobody; a poll without a cursor answers at once with the recent ones;
// bad parameters are refused with 400.
func TestStreamPoll(t *testing.T) {
	tr := startTracker(t, Config{})
	poll := func(query string) StreamEvents {
		t.Helper()
		st, b := do(t, "GET", tr.URL+"/v1/streams/live/show"+query, "", nil)
		if st != http.StatusOK {
			t.Fatalf("poll %s: %d %s", query, st, b)
		}
		var ev StreamEvents
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("poll %s: %v: %s", query, err, b)
		}
		return ev
	}
	first := poll("")
	if len(first.Paths) != 0 {
		t.Fatalf("a new directory has events: %+v", first)
	}

	seg1, _ := testFile(t, "live/show/seg1.ts", 100<<10)
	other, _ := testFile(t, "live/other/seg1.ts", 100<<10)
	got := make(chan StreamEvents, 1)
	go func() {
		st, b := do(t, "GET", fmt.Sprintf("%s/v1/streams/live/show?after=%d", tr.URL, first.Next), "", nil)
		var ev StreamEvents
		if st != http.StatusOK || json.Unmarshal(b, &ev) != nil {
			t.Errorf("long poll: %d %s", st, b)
		}
		got <- ev
	}()
	// Whether the poll waits already or comes after them, it is answered
	// with the registration in its directory only.
	mustRegister(t, tr, other)
	mustRegister(t, tr, seg1)
	var ev StreamEvents
	select {
	case ev = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the long poll was not answered 5 s after a registration in its directory")
	}
	if !slices.Equal(ev.Paths, []string{"live/show/seg1.ts"}) || ev.Next <= first.Next {
		t.Fatalf("long poll answered %+v, want seg1 and a later cursor than %d", ev, first.Next)
	}

	// The same bytes again are no news; a poll past them waits out its wait.
	mustRegister(t, tr, seg1)
	if again := poll(fmt.Sprintf("?after=%d&wait=0.3", ev.Next)); len(again.Paths) != 0 || again.Next != ev.Next {
		t.Fatalf("re-registering the same bytes was news: %+v", again)
	}
	seg2, _ := testFile(t, "live/show/seg2.ts", 100<<10)
	mustRegister(t, tr, seg2)
	if ev := poll(""); !slices.Equal(ev.Paths, []string{"live/show/seg1.ts", "live/show/seg2.ts"}) {
		t.Fatalf("recent registrations: %+v", ev)
	}
	// A cursor of an earlier run of the tracker (larger than any now) gets
	// what there is at once.
	if ev := poll("?after=999999"); len(ev.Paths) != 2 {
		t.Fatalf("a cursor from the future: %+v", ev)
	}
	for _, q := range []string{"?after=x", "?after=-1", "?after=1&wait=soon"} {
		if st, b := do(t, "GET", tr.URL+"/v1/streams/live/show"+q, "", nil); st != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", q, st, b)
		}
	}
	if st, _ := do(t, "GET", tr.URL+"/v1/streams/live/../..?after=1", "", nil); st/100 != 4 {
		t.Errorf("a path escaping: %d, want 4xx", st)
	}
}
