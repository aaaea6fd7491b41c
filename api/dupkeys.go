package api

import (
	"bytes"
	"encoding/json"
	"unicode"
	"unicode/utf8"
)

// memberProblem says why a body's member names are refused.
type memberProblem int

const (
	memberOK memberProblem = iota
	// memberDuplicate: a name appears twice in one object, as the decoder
	// folds names.
	memberDuplicate
	// memberDisguised: a name spells an ASCII letter with a non-ASCII
	// character that the decoder folds onto it ("ſubject" binds to
	// Subject).
	memberDisguised
)

// memberNameProblem finds a JSON object member name that appears twice in
// one object, compared as encoding/json matches names to fields (it folds
// case with Unicode simple folding, so "ſubject" (U+017F) and "Subject"
// are one name, as are "Kelvin" with K (U+212A) and "kelvin"). encoding/json
// silently keeps the last value; a proxy, WAF or audit log in front of csrd
// may keep the first, so a body with duplicates means different things to
// different readers and is refused instead. A name that spells an ASCII
// letter with such a non-ASCII character is refused even alone: a reader
// looking for "Subject" does not see it, csrd would bind it. It returns the
// JSON path of the offending name ("SANs.dns") and why. Bodies that are not
// well-formed JSON return "" and are left to the decoder, which reports them
// precisely.
func memberNameProblem(body []byte) (string, memberProblem) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var s memberScan
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", memberOK
		}
		if path, problem := s.take(tok); problem != memberOK {
			return path, problem
		}
		if len(s.stack) == 0 {
			return "", memberOK
		}
	}
}

// memberScan follows a token stream's nesting: one frame per open object
// or array, innermost last.
type memberScan struct {
	stack []*memberFrame
}

// memberFrame is one open container.
type memberFrame struct {
	object  bool
	seen    map[string]bool // object frames: folded names already used
	path    string
	wantKey bool // object frames: the next string token is a member name
	lastKey string
}

func (s *memberScan) top() *memberFrame {
	if len(s.stack) == 0 {
		return nil
	}
	return s.stack[len(s.stack)-1]
}

// take consumes one token and returns the path of a refused member name
// and why, or memberOK.
func (s *memberScan) take(tok json.Token) (string, memberProblem) {
	switch t := tok.(type) {
	case json.Delim:
		s.delim(t)
	case string:
		if top := s.top(); top != nil && top.object && top.wantKey {
			return top.name(t)
		}
		s.valueDone()
	default:
		s.valueDone()
	}
	return "", memberOK
}

// delim opens or closes a container. A closed container is a value of its
// parent: an object parent then waits for its next member name.
func (s *memberScan) delim(d json.Delim) {
	switch d {
	case '{', '[':
		path := ""
		if top := s.top(); top != nil {
			path = top.path
			if top.object {
				path = joinPath(path, top.lastKey)
			}
		}
		s.stack = append(s.stack, &memberFrame{object: d == '{', seen: map[string]bool{}, path: path, wantKey: true})
	case '}', ']':
		s.stack = s.stack[:len(s.stack)-1]
		s.valueDone()
	}
}

// valueDone: a scalar inside an object consumes the pending member name.
func (s *memberScan) valueDone() {
	if top := s.top(); top != nil && top.object {
		top.wantKey = true
	}
}

// name records a member name of f, or says why it is refused.
func (f *memberFrame) name(n string) (string, memberProblem) {
	if disguised(n) {
		return joinPath(f.path, n), memberDisguised
	}
	k := foldName(n)
	if f.seen[k] {
		return joinPath(f.path, n), memberDuplicate
	}
	f.seen[k] = true
	f.lastKey, f.wantKey = n, false
	return "", memberOK
}

// foldName folds a member name exactly as encoding/json does to match it
// to a field (its fold.go): ASCII letters upper-cased, any other rune
// replaced by the smallest rune of its simple case-folding orbit.
func foldName(name string) string {
	out := make([]byte, 0, len(name))
	for _, r := range name {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			out = append(out, byte(r))
			continue
		}
		out = utf8.AppendRune(out, foldRune(r))
	}
	return string(out)
}

func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// disguised reports whether name holds a non-ASCII rune that the decoder
// folds to an ASCII one.
func disguised(name string) bool {
	for _, r := range name {
		if r >= utf8.RuneSelf && foldRune(r) < utf8.RuneSelf {
			return true
		}
	}
	return false
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}
