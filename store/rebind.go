package store

import (
	"strconv"
	"strings"
	"sync"
)

// The store's SQL is written once, in the subset SQLite and PostgreSQL
// share, with SQLite's placeholders. For PostgreSQL, rebind rewrites each
// statement as it reaches the driver (see pgConn), outside string literals,
// quoted identifiers and comments:
//
//   - placeholders: ?NNN becomes $NNN, and each bare ? the next $n;
//   - json_each(x), SQLite's table of a JSON array's elements, becomes
//     json_array_elements_text(x), whose column is also named value;
//   - instr(a, b) becomes strpos(a, b) (same arguments, same result);
//   - lower(x) becomes lower((x) COLLATE "C"): PostgreSQL lowers letters by
//     the database's locale, SQLite only ASCII ones, and csrd compares with
//     ASCII folding (see asciiLower).
//
// Anything else that differs (the audit sequence, pragmas, backups) is not
// rewritten: the dialect says it explicitly (dialect.go).
func rebind(query string) string {
	if v, ok := rebound.Load(query); ok {
		return v.(string)
	}
	out := rebindUncached(query)
	rebound.Store(query, out)
	return out
}

// rebound caches rebind: the statements are a fixed set of constants.
var rebound sync.Map

func rebindUncached(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0 // bare placeholders seen
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := quotedEnd(q, i)
			b.WriteString(q[i:j])
			i = j
		case c == '$' && strings.HasPrefix(q[i:], "$$"): // a dollar-quoted body
			j := strings.Index(q[i+2:], "$$")
			if j < 0 {
				j = len(q) - i - 4
			}
			b.WriteString(q[i : i+j+4])
			i += j + 4
		case c == '-' && strings.HasPrefix(q[i:], "--"):
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i
			}
			b.WriteString(q[i : i+j])
			i += j
		case c == '?':
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			if j > i+1 {
				b.WriteString("$" + q[i+1:j])
			} else {
				n++
				b.WriteString("$" + strconv.Itoa(n))
			}
			i = j
		case isIdentStart(c) && (i == 0 || !isIdentPart(q[i-1])):
			j := i
			for j < len(q) && isIdentPart(q[j]) {
				j++
			}
			word := q[i:j]
			if j < len(q) && q[j] == '(' {
				switch strings.ToLower(word) {
				case "json_each":
					word = "json_array_elements_text"
				case "instr":
					word = "strpos"
				case "lower":
					end := closingParen(q, j)
					if end > 0 {
						b.WriteString(`lower((` + rebindUncached(q[j+1:end]) + `) COLLATE "C")`)
						i = end + 1
						continue
					}
				}
			}
			b.WriteString(word)
			i = j
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// quotedEnd returns the index after the literal or identifier opening at
// q[i] (a doubled quote is an escaped one).
func quotedEnd(q string, i int) int {
	quote := q[i]
	for j := i + 1; j < len(q); j++ {
		if q[j] == quote {
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(q)
}

// closingParen returns the index of the parenthesis closing the one at
// q[open], or -1.
func closingParen(q string, open int) int {
	depth := 0
	for i := open; i < len(q); i++ {
		switch q[i] {
		case '\'', '"':
			i = quotedEnd(q, i) - 1
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return i
			}
		}
	}
	return -1
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }
