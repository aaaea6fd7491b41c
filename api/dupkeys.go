package api

import (
	"bytes"
	"encoding/json"
	"strings"
)

// duplicateMember finds a JSON object member name that appears twice in
// one object, compared case-insensitively because binding is (ASP.NET and
// encoding/json both fold case). encoding/json silently keeps the last
// value; a proxy, WAF or audit log in front of csrd may keep the first, so
// a body with duplicates means different things to different readers and is
// refused instead. It returns the JSON path of the duplicate ("SANs.dns").
// Bodies that are not well-formed JSON return "" and are left to the
// decoder, which reports them precisely.
func duplicateMember(body []byte) string {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	type frame struct {
		object  bool
		seen    map[string]bool
		path    string
		wantKey bool // object frames: the next string token is a member name
		lastKey string
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		// A value (scalar or container start) inside an object consumes
		// the pending member name.
		valueDone := func() {
			if top != nil && top.object {
				top.wantKey = true
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				path := ""
				if top != nil {
					path = top.path
					if top.object {
						path = joinPath(path, top.lastKey)
					}
				}
				stack = append(stack, &frame{object: t == '{', seen: map[string]bool{}, path: path, wantKey: true})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) > 0 {
					if p := stack[len(stack)-1]; p.object {
						p.wantKey = true
					}
				}
			}
		case string:
			if top != nil && top.object && top.wantKey {
				k := strings.ToLower(t)
				if top.seen[k] {
					return joinPath(top.path, t)
				}
				top.seen[k] = true
				top.lastKey, top.wantKey = t, false
				continue
			}
			valueDone()
		default:
			valueDone()
		}
		if len(stack) == 0 {
			return ""
		}
	}
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}
